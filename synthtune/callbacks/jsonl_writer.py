"""Resumable, DDP-safe JSONL writer for generated samples.

Each rank appends the rows its ``predict_step`` returns to its own shard file
(``<output>.rank<R>.partial.jsonl``), flushing and fsyncing after every batch, so a crash loses at most
the batch in flight. On the next start the ids already on disk are handed to the datamodule's
``skip_ids`` so they are never generated again. When prediction ends, rank 0 merges the final file and
every shard, keeps the first row of each id, sorts by id, and replaces the final file atomically.

One run at a time per output: rank 0 holds an exclusive lock on ``<output>.lock`` from setup to the
end, so a second run into the same file stops at once with one line naming the holder. Every merge
checks that all rows it folds in carry the same ``params``. ``overwrite`` never deletes the old file
up front: the new samples replace it atomically at the end, so a run that fails (say, on a
mismatched checkpoint) leaves it as it was.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import zlib
from pathlib import Path
from typing import IO, Any, Iterable, Sequence

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities.exceptions import SIGTERMException
from rich.console import Console
from rich.text import Text

from synthtune.errors import SynthtuneError
from synthtune.paths import OutputLock, atomic_write_json, atomic_write_jsonl, with_filename
from synthtune.preflight import check_output_file
from synthtune.records import read_jsonl

log = logging.getLogger(__name__)

DEFAULT_FILE_NAME = "samples.jsonl"
_SHARD_RE = re.compile(r"\.rank(\d+)\.partial\.jsonl$")
_FIX = "pass --writer.overwrite true to start over, or another --writer.output_path"
_PREVIEW_CHARS = 300
#: Above this fraction of samples cut off at max_new_tokens, predict warns and names the option to raise.
CAP_WARN_FRACTION = 0.05
#: zlib size / length of a text's last 200 characters below which it is a repetition loop; real GSM8K questions
#: of 200+ characters never go below 0.53, a sample repeating "She is 12 years old." scores about 0.2
LOOP_RATIO = 0.35


def shard_path(output: Path, rank: int) -> Path:
    """The per-rank shard file that rank ``rank`` appends to while generating into ``output``."""
    return output.with_name(f"{output.name}.rank{rank}.partial.jsonl")


def find_shards(output: Path) -> list[Path]:
    """Every shard file of ``output`` on disk (any rank count), ordered by rank."""
    found = []
    for name in glob.glob(glob.escape(str(output)) + ".rank*.partial.jsonl"):
        match = _SHARD_RE.search(name)
        if match and Path(name).is_file():
            found.append((int(match.group(1)), Path(name)))
    return [path for _, path in sorted(found)]


def to_jsonable(value: Any) -> Any:
    """``value`` with tensors, numpy values, tuples and paths turned into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist"):  # torch.Tensor, numpy arrays and numpy scalars
        return to_jsonable(value.tolist())
    raise TypeError(f"cannot write a {type(value).__name__} to JSON")


def _sample_id(row: Any, source: str) -> int:
    if not isinstance(row, dict):
        raise SynthtuneError(f"{source}: expected a dict per sample, got {type(row).__name__}; {_FIX}")
    sample_id = row.get("id")
    if hasattr(sample_id, "item") and not isinstance(sample_id, (int, float, str)):
        sample_id = sample_id.item()  # a 0-d tensor or numpy integer
    if isinstance(sample_id, bool) or not isinstance(sample_id, int):
        raise SynthtuneError(
            f"{source}: a sample lacks an integer 'id' (got {row.get('id')!r}); "
            "predict_step must return a list of dicts with an int 'id' per sample"
        )
    return sample_id


def read_sample_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a samples file; broken lines (a crash mid-write) are skipped with a warning. A row
    without an integer ``id`` raises, since the file is then not a samples file."""
    if not path.is_file():
        return []
    rows = read_jsonl(path)
    for row in rows:
        if isinstance(row.get("id"), bool) or not isinstance(row.get("id"), int):
            raise SynthtuneError(f"{path} holds a row without an integer 'id', so it is not a samples file; {_FIX}")
    return rows


def merge_rows(groups: Iterable[Iterable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """All rows of ``groups`` with one row per id (the first seen wins), sorted by id."""
    by_id: dict[int, dict[str, Any]] = {}
    for rows in groups:
        for row in rows:
            by_id.setdefault(row["id"], row)
    return [by_id[k] for k in sorted(by_id)]


def _params_diff(old: dict[str, Any], new: Any) -> str:
    if not isinstance(new, dict):
        return f"new samples carry params={new!r}"
    keys = sorted(k for k in set(old) | set(new) if old.get(k, "<missing>") != new.get(k, "<missing>"))
    shown = ", ".join(f"{k}: {old.get(k, '<missing>')!r} -> {new.get(k, '<missing>')!r}" for k in keys[:3])
    return shown + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def item_provenance(batch: Any) -> dict[int, dict[str, Any]]:
    """A predict batch's ``provenance`` (one dict per item, contract.py) by the item's sample id; {} without it."""
    if not isinstance(batch, dict) or not batch.get("provenance"):
        return {}
    ids = batch["id"].tolist() if hasattr(batch["id"], "tolist") else list(batch["id"])
    return dict(zip(ids, batch["provenance"]))


def with_provenance(row: dict[str, Any], provenance: dict[str, Any] | None, source: str) -> dict[str, Any]:
    """The provenance fields a sample gets; one line when one would replace a field the row has."""
    clash = sorted(set(provenance or ()) & set(row))
    if clash:
        raise SynthtuneError(f"the data's carried field(s) {clash} meet the field(s) of that name that {source} "
                             f"writes; rename the column in the data, or leave it out of carry_fields")
    return provenance or {}


def main_text(row: dict[str, Any]) -> str:
    """The row's main text: a sample, an answer, or the second sentence of a pair."""
    return str(next((row[k] for k in ("text", "answer", "text_b") if row.get(k)), ""))


def is_repetition_loop(text: str, window: int = 200) -> bool:
    """Whether the end of ``text`` repeats itself, judged by how well its last ``window`` characters compress:
    a sample caught in a loop never emits EOS, whatever the cap."""
    tail = text[-window:].encode("utf-8")
    return len(tail) >= 40 and len(zlib.compress(tail, 9)) / len(tail) < LOOP_RATIO


class JsonlPredictionWriter(BasePredictionWriter):
    """Write every generated sample to one JSONL file, resumably and safely under DDP.

    ``predict_step`` must return a list of dicts, each with a unique integer ``"id"``. Rows go to a
    per-rank shard (``<output>.rank<R>.partial.jsonl``, flushed after every batch); at the end rank 0
    merges them into ``output`` with one row per id, sorted by id. Restarting the same command resumes:
    ids already on disk are passed to the datamodule's ``skip_ids`` and are not generated again.
    Rows whose ``params`` differ from those already on disk (another checkpoint or other generation
    settings) raise instead of mixing two runs in one file.

    Args:
        output_path: The JSONL file to write. Default: ``<trainer.default_root_dir>/samples.jsonl``.
        overwrite: Start over instead of resuming: the new samples replace the file (atomically, once
            prediction ends); until then the old file stays as it was.
        preview: How many generated texts to print when prediction ends (0 prints none).
    """

    def __init__(self, output_path: str | None = None, overwrite: bool = False, preview: int = 3) -> None:
        super().__init__(write_interval="batch")
        if preview < 0:
            raise SynthtuneError(f"--writer.preview must be >= 0 (got {preview}); pass 0 to print no preview")
        self.output_path = output_path
        self.overwrite = overwrite
        self.preview = preview
        self.output_file: Path | None = None
        self._shard: Path | None = None
        self._handle: IO[str] | None = None
        self._done: set[int] = set()
        self._written: set[int] = set()
        self._params: Any = None
        self._check_params = False
        self._lock: OutputLock | None = None

    # ----------------------------------------------------------------- setup / resume
    def resolve_output(self, trainer: pl.Trainer) -> Path:
        """The final output file: ``output_path`` or ``<default_root_dir>/samples.jsonl``."""
        if self.output_path:
            return Path(self.output_path).expanduser().absolute()
        return (Path(trainer.default_root_dir).expanduser() / DEFAULT_FILE_NAME).absolute()

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "predict":
            return
        self._close()
        output = self.resolve_output(trainer)
        self.output_file = output
        self._shard = shard_path(output, trainer.global_rank)
        self._written = set()
        self._on_rank_zero(trainer, lambda: self._claim(output))

        if self.overwrite:
            # Nothing is read or deleted yet: old shards go once the checkpoint has loaded
            # (on_predict_start), the old file only when the new one replaces it.
            self._done, self._params, self._check_params = set(), None, True
            return

        # Every rank reads and checks the same files before any barrier, so a bad file raises on all
        # ranks alike instead of leaving the others waiting.
        shards = find_shards(output)
        groups = [read_sample_rows(output)] + [read_sample_rows(s) for s in shards]
        self._refuse_foreign_rows(groups[0], output)
        merged = merge_rows(groups)
        self._done = {row["id"] for row in merged}
        self._params, self._check_params = self._reference_params([r for g in groups for r in g], output)

        trainer.strategy.barrier("synthtune_writer_read")
        if shards and trainer.is_global_zero:
            # Fold a crashed run's shards into the final file now: if nothing is left to generate,
            # Lightning skips the predict loop and on_predict_end would never merge them.
            atomic_write_jsonl(output, merged)
            for path in shards:
                path.unlink(missing_ok=True)
            self._report_length_cap(output, merged)  # the summary counts the folded rows too, not an older run's
        trainer.strategy.barrier("synthtune_writer_consolidated")

        if self._done:
            datamodule = trainer.datamodule
            can_skip = datamodule is not None and callable(getattr(datamodule, "skip_ids", None))
            if can_skip:
                datamodule.skip_ids(set(self._done))
            if trainer.is_global_zero:
                self._report_resume(output, can_skip)

    def _claim(self, output: Path) -> None:
        """Check that ``output`` can be written and take its lock, before any sample is generated."""
        check_output_file(output, "--writer.output_path", DEFAULT_FILE_NAME, "samples")  # a link is written through
        self._lock = OutputLock(output)
        self._lock.acquire()

    @staticmethod
    def _on_rank_zero(trainer: pl.Trainer, work: Any) -> Any:
        """Run ``work()`` on rank 0; a SynthtuneError it raises is raised on every rank (no rank hangs)."""
        result, problem = None, None
        if trainer.is_global_zero:
            try:
                result = work()
            except SynthtuneError as exc:
                problem = str(exc)
        problem = trainer.strategy.broadcast(problem)
        if problem:
            raise SynthtuneError(problem)
        return result

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """With ``overwrite``, drop an earlier run's shards now that the checkpoint has loaded."""
        if self.overwrite and self.output_file is not None:
            if trainer.is_global_zero:
                for path in find_shards(self.output_file):
                    path.unlink(missing_ok=True)
            trainer.strategy.barrier("synthtune_writer_overwrite")

    def _report_resume(self, output: Path, can_skip: bool) -> None:
        if can_skip:
            message = f"resuming: {len(self._done)} samples already in {output}; generating only the rest"
            log.info(message)
        else:
            log.warning(
                "%d samples already in %s, but the datamodule has no skip_ids(); they will be generated "
                "again and dropped",
                len(self._done),
                output,
            )

    @staticmethod
    def _refuse_foreign_rows(rows: Sequence[dict[str, Any]], output: Path) -> None:
        """An existing output file is resumed only if predict wrote it: every row carries the ``params``
        (checkpoint fingerprint, sampling settings) predict writes. Rows of ids and texts from elsewhere
        were taken for a resume and the file rewritten around them."""
        foreign = next((row for row in rows if not isinstance(row.get("params"), dict)), None)
        if foreign is not None:
            raise SynthtuneError(
                f"{output} was not written by `synthtune predict` (row id {foreign['id']} has no 'params'), so it "
                f"cannot be resumed and is left as it is; {_FIX}")

    @staticmethod
    def _reference_params(rows: Sequence[dict[str, Any]], output: Path) -> tuple[Any, bool]:
        """The ``params`` every new row must match, and whether to check at all."""
        with_params = [row["params"] for row in rows if isinstance(row.get("params"), dict)]
        if not with_params:
            # Rows without params on disk: nothing to compare with. Empty disk: the first new row sets it.
            return None, not rows
        reference = with_params[0]
        for params in with_params[1:]:
            if params != reference:
                raise SynthtuneError(
                    f"{output} already mixes samples from different checkpoints/params "
                    f"({_params_diff(reference, params)}); {_FIX}"
                )
        return reference, True

    # ----------------------------------------------------------------- writing
    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Append this batch's new samples to this rank's shard, then flush and fsync."""
        if self._shard is None or self.output_file is None:
            raise RuntimeError("JsonlPredictionWriter.setup was not called for the predict stage")
        source = f"{type(pl_module).__name__}.predict_step"
        if not isinstance(prediction, (list, tuple)):
            raise SynthtuneError(
                f"{source} returned {type(prediction).__name__}; it must return a list of dicts, one per sample"
            )
        lines = []
        provenance = item_provenance(batch)
        for row in prediction:
            sample_id = _sample_id(row, source)
            if sample_id in self._done or sample_id in self._written:
                continue
            clean = to_jsonable({**row, **with_provenance(row, provenance.get(sample_id), source), "id": sample_id})
            self._check_row_params(clean)
            self._written.add(sample_id)
            lines.append(json.dumps(clean, ensure_ascii=False) + "\n")
        if not lines:
            return
        try:
            if self._handle is None:
                self._handle = self._shard.open("a", encoding="utf-8")
            self._handle.write("".join(lines))
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:  # a full disk: the batches before this one stay, and the next run resumes after them
            raise with_filename(exc, self._shard) from exc

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        """Write the batch; then, if the run got SIGTERM, stop (Lightning's predict loop would go on to
        the end): the shard keeps every finished batch, so the same command resumes."""
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        if trainer.received_sigterm:
            self._close()
            stop = SIGTERMException()
            stop.synthtune_kept = f"{len(self._written)} new samples are kept in {self._shard}"
            raise stop

    def _check_row_params(self, row: dict[str, Any]) -> None:
        if not self._check_params:
            return
        if self._params is None and isinstance(row.get("params"), dict):
            self._params = row["params"]  # nothing on disk yet: the run's first row is the reference
            return
        if row.get("params") != self._params:
            raise SynthtuneError(
                f"{self.output_file} holds samples from another checkpoint/params "
                f"({_params_diff(self._params or {}, row.get('params'))}); {_FIX}"
            )

    def _close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None  # closed once, even when the close fails (a full disk)
            handle.close()

    # ----------------------------------------------------------------- end of prediction
    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Merge every shard into the final file on rank 0 and print a summary with a preview."""
        self._close()
        output = self.output_file
        assert output is not None
        trainer.strategy.barrier("synthtune_writer_before_merge")
        self._on_rank_zero(trainer, lambda: self._merge(output))
        trainer.strategy.barrier("synthtune_writer_after_merge")
        self._release()

    def _merge(self, output: Path) -> None:
        """Fold every shard (and, unless overwriting, the old file) into ``output``, atomically."""
        shards = find_shards(output)
        groups = ([] if self.overwrite else [read_sample_rows(output)]) + [read_sample_rows(s) for s in shards]
        self._reference_params([r for g in groups for r in g], output)  # never mix two runs in one file
        merged = merge_rows(groups)
        atomic_write_jsonl(output, merged)
        for path in shards:
            path.unlink(missing_ok=True)
        new = len({row["id"] for row in merged} - self._done)
        self._print_summary(output, merged, new)
        self._report_length_cap(output, merged)

    def _report_length_cap(self, output: Path, rows: Sequence[dict[str, Any]]) -> None:
        """Count the samples that stopped at ``max_new_tokens`` instead of at EOS (rows with ``hit_cap``),
        write the counts to ``<output>.summary.json`` and warn when more than a few percent were cut off."""
        flagged = [row for row in rows if "hit_cap" in row]
        if not flagged:
            return
        capped_rows = [row for row in flagged if row["hit_cap"]]
        capped, loops = len(capped_rows), sum(is_repetition_loop(main_text(row)) for row in capped_rows)
        cap = flagged[0].get("params", {}).get("max_new_tokens") if isinstance(flagged[0].get("params"), dict) else None
        summary = {"samples": len(rows), "ended_at_eos": len(flagged) - capped, "hit_cap": capped,
                   "hit_cap_fraction": capped / len(flagged), "repetition_loops": loops, "max_new_tokens": cap}
        atomic_write_json(output.with_name(output.name + ".summary.json"), summary)
        message = (f"{summary['ended_at_eos']} of {len(flagged)} samples ended at EOS; {capped} "
                   f"({100 * summary['hit_cap_fraction']:.1f} %) stopped at the cap max_new_tokens={cap}")
        if loops:
            message += f", {loops} of them in a repetition loop"
        if summary["hit_cap_fraction"] <= CAP_WARN_FRACTION:
            log.info(message)
        elif (capped - loops) / len(flagged) > CAP_WARN_FRACTION:
            log.warning("%s; the others are cut off mid-text: raise --model.init_args.max_new_tokens", message)
        else:  # mostly loops: a higher cap only makes them longer
            log.warning("%s; a higher cap would not end the loops: set --model.init_args.repetition_penalty 1.1, "
                        "lower temperature or top_p, or train the prompt longer", message)

    def _print_summary(self, output: Path, rows: Sequence[dict[str, Any]], new: int) -> None:
        console = Console()
        console.print(Text(f"wrote {len(rows)} samples ({new} new) to {output}", style="bold green"))
        for row in rows[: self.preview]:
            text = main_text(row)
            if len(text) > _PREVIEW_CHARS:
                text = text[:_PREVIEW_CHARS] + "…"
            console.print(Text(f"[{row['id']}] ", style="cyan") + Text(text))

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Close the shard so what was written so far stays on disk for the next resume; release the lock even
        when the close fails too (the disk that stopped the run is full)."""
        try:
            self._close()
        except OSError:
            pass  # the batch that failed is the only unflushed text; the rows before it are on disk
        finally:
            self._release()

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._close()
        self._release()
