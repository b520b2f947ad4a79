"""Run the ``synthtune`` command in-process, as a user would from a shell."""

from synthtune.cli import main


def run_synthtune(argv, capsys):
    """Run ``synthtune <argv>``; return (exit code, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    return code, capsys.readouterr().err
