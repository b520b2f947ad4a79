"""What ``synthtune`` does to its output before any run, for the command line and the Python API alike: the
warnings that are expected by design are hidden, and synthtune's own log lines get a handler."""

from __future__ import annotations

import logging
import warnings


def quiet_known_noise() -> None:
    """Hide messages that are expected by design and would only confuse a user."""
    # The frozen backbone is in eval mode on purpose; validation is optional; advertising tips.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    warnings.filterwarnings("ignore", message=r".*Total length of `.*` across ranks is zero.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers which may be a bottleneck.*")
    # DawGen steps its optimizers by hand; a checkpoint holding the state after the step is what resume needs.
    warnings.filterwarnings("ignore", message=r".*Using ModelCheckpoint with manual optimization and every_n_train_steps.*")
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _no_tips not in tips.filters:
        tips.addFilter(_no_tips)


def _no_tips(record: logging.LogRecord) -> bool:
    return not str(record.getMessage()).startswith("💡 Tip")


def configure_logging() -> None:
    """:func:`quiet_known_noise`, synthtune's log lines through Rich (once), and transformers' own quiet."""
    quiet_known_noise()
    logger = logging.getLogger("synthtune")
    if not logger.handlers:
        try:
            from rich.logging import RichHandler

            handler: logging.Handler = RichHandler(show_time=False, show_path=False, markup=False)
        except ImportError:  # pragma: no cover - rich is a dependency
            handler = logging.StreamHandler()
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
