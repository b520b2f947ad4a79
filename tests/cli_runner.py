"""Run the ``synthtune`` command in-process, as a user would from a shell."""

from synthtune.cli import main


def run_synthtune_output(argv, capsys):
    """Run ``synthtune <argv>``; return (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def run_synthtune(argv, capsys):
    """Run ``synthtune <argv>``; return (exit code, stderr)."""
    code, _, err = run_synthtune_output(argv, capsys)
    return code, err
