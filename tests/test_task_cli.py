"""The reference tasks as one command-line family, and their one table of methods.

Cheap: parse-only, --help, error paths, one tiny run. The tasks' own tests (test_task_*.py)
run the training code.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rbpsolve import cli
from rbpsolve.adapters.tasks import _cli, methods as table

TASKS = ("hopfield", "citation", "hyperopt")
COMMANDS = [(c, t) for t in TASKS for c in ("task", "reproduce")]
COMMON = ("--data", "--out", "--download", "--device", "--seed")
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "results"


def _parser(monkeypatch, command, name):
    """The argparse parser of ``rbpsolve COMMAND NAME``, caught as --help builds it."""
    made = []
    real = _cli.make_parser

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(_cli, "make_parser", spy)
    with pytest.raises(SystemExit) as info:
        cli.main([command, name, "--help"])
    assert info.value.code == 0 and len(made) == 1
    return made[0]


# -- the method table ---------------------------------------------------------------------------------------------


def test_aliases_map_to_one_canonical_spelling():
    assert table.canonical("neumann") == "neumann_rbp" and table.canonical(" CG ") == "cg_rbp"
    assert table.canonical("rneumann") == "randomized_neumann" and table.canonical("Neumann-RBP") == "neumann_rbp"
    assert all(table.canonical(m) == m for m in table.METHODS)
    assert set(table.PAPER_METHODS) | set(table.EXTRA_METHODS) == set(table.METHODS)
    with pytest.raises(ValueError, match="unknown method 'sgd'; choose one of bptt"):
        table.canonical("sgd")
    with pytest.raises(ValueError, match="choose one of bptt, tbptt$"):
        table.canonical("neumann", ("bptt", "tbptt"))
    assert table.label("cg") == "CG-RBP" and table.label("mystery") == "mystery"


def test_the_paper_series_run_their_K_steps_whatever_happens():
    pytest.importorskip("torch")
    for name in ("rbp", "neumann", "randomized_neumann"):
        solver = table.solver(name, 7)
        assert math.isinf(solver.divergence_factor) and solver.rtol == 0.0 and solver.atol == 0.0
    assert table.solver("rbp", 7).max_steps == 7 and table.solver("cg", 7).max_steps == 7
    assert table.solver("gmres", 70).restart == 70
    with pytest.raises(ValueError, match="no adjoint solver"):
        table.solver("bptt", 5)
    with pytest.raises(ValueError, match="K must be an int >= 1"):
        table.solver("rbp", 0)


def test_every_task_takes_its_solvers_from_the_table():
    pytest.importorskip("torch")
    import torch

    from rbpsolve.adapters.tasks.citation import methods as citation
    from rbpsolve.adapters.tasks.hopfield import methods as hopfield
    from rbpsolve.adapters.tasks.hyperopt import hypergrad

    def same(a, b):
        assert type(a) is type(b) and vars(a) == vars(b), (a, b)

    for name in ("rbp", "cg_rbp", "neumann_rbp", "gmres"):
        same(hypergrad.adjoint_solver(name, 9), table.solver(name, 9))
        same(citation.backward_solver(name, 9), table.solver(name, 9))
        same(hopfield._solver(name, 9, torch.Generator()), table.solver(name, 9))
    # the one stated departure: citation's randomized Neumann keeps a head of K terms
    r = citation.backward_solver("rneumann", 9)
    assert r.min_steps == 9 and r.continue_prob == 0.5
    assert hypergrad.adjoint_solver("neumann", 3).max_steps == 3  # older names still work in Python
    assert "ZeroDivisionError" not in Path(hopfield.__file__).read_text()  # the dead retry is gone


def test_the_torch_free_method_lists_of_the_commands_match_the_tasks():
    pytest.importorskip("torch")
    from rbpsolve.adapters.tasks.citation import cli as ccli, methods as cmethods, train
    from rbpsolve.adapters.tasks.hyperopt import cli as hcli, experiment, hypergrad

    assert ccli.METHODS == cmethods.METHODS and ccli.PAPER_METHODS == cmethods.PAPER_METHODS
    assert hcli.METHODS == hypergrad.METHODS and hcli.FIG5_METHODS == experiment.FIG5_METHODS
    d = train.Config()
    assert (d.steps, d.truncate, d.epochs, d.lr, d.eval_every) == (100, 5, 2000, 1e-3, 20)


# -- help and parsing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command,name", COMMANDS)
def test_help_has_text_and_defaults_on_every_option(command, name, monkeypatch, capsys):
    parser = _parser(monkeypatch, command, name)
    text = capsys.readouterr().out
    assert "%%" not in text and "Traceback" not in text
    options = {o for a in parser._actions for o in a.option_strings}
    for option in COMMON + (("--methods",) if command == "reproduce" else ("--method",)):
        assert option in options, option
    for action in parser._actions:
        if action.help == "==SUPPRESS==" or action.dest == "help":
            continue
        assert action.help, f"{action.option_strings} has no help"
        if action.default not in (None, False):
            assert "(default: " in parser.formatter_class(parser.prog)._get_help_string(action), action.option_strings
    assert re.search(r"--seed SEED\s+\S.*\(default: \d+\)", " ".join(text.split()))


def test_citation_help_prints_its_split_once_escaped(monkeypatch, capsys):
    _parser(monkeypatch, "task", "citation")
    assert "1%/49%/50%" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command,name", COMMANDS)
def test_one_spelling_in_and_aliases_accepted(command, name, monkeypatch):
    parser = _parser(monkeypatch, command, name)
    if command == "task":
        assert parser.parse_args(["--method", "neumann"]).method == "neumann_rbp"
        assert parser.parse_args(["--method", "CG"]).method == "cg_rbp"
        assert parser.parse_args([]).method == "neumann_rbp"
    else:
        args = parser.parse_args(["--methods", "bptt,neumann", "cg"])
        assert _cli.flat(args.methods) == ["bptt", "neumann_rbp", "cg_rbp"]
        assert _cli.flat(parser.parse_args([]).methods)[:3] == ["bptt", "tbptt", "rbp"] or name == "citation"
        assert parser.parse_args([]).out == Path(f"docs/results/{name}")
    args = parser.parse_args(["--data-root", "/d", "--device", "cpu", "--seed", "3", "--out", "o"])  # old spelling
    assert (args.data, args.seed, args.out) == ("/d", 3, Path("o"))
    with pytest.raises(SystemExit):
        parser.parse_args(["--seed", "-1"])


def test_citation_reproduce_keeps_out_dir_as_a_deprecated_alias(monkeypatch):
    parser = _parser(monkeypatch, "reproduce", "citation")
    assert parser.parse_args(["--out-dir", "x"]).out == Path("x")
    assert parser.parse_args([]).out == Path("docs/results/citation")


@pytest.mark.parametrize("command", ["task", "reproduce"])
def test_no_task_name_is_one_clear_line(command, capsys):
    assert cli.main([command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(t in err for t in TASKS) and f"rbpsolve {command} NAME" in err
    assert cli.main([command, "--quick"]) == 2


def test_bad_method_is_argparses_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["task", "hyperopt", "--method", "lsqr"])
    assert info.value.code == 2
    assert "argument --method: unknown method 'lsqr'; choose one of bptt" in capsys.readouterr().err


def test_help_and_errors_need_no_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from rbpsolve.cli import main\n"
        "for c in ('task', 'reproduce'):\n"
        "    for t in ('hopfield', 'citation', 'hyperopt'):\n"
        "        try:\n"
        "            main([c, t, '--help'])\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, (c, t, e.code)\n"
        "print('RC', main(['task', 'hyperopt', '--quick']))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "usage: rbpsolve task hyperopt" in run.stdout and "RC 2" in run.stdout
    assert run.stderr.strip().splitlines()[-1].startswith("rbpsolve task hyperopt: error: needs torch")
    assert "Traceback" not in run.stderr


# -- errors, outputs, progress ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TASKS)
def test_missing_data_is_one_line_naming_the_option(name, tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as info:
        cli.main(["task", name, "--quick", "--data", str(empty)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"rbpsolve task {name}: error: data file ") and "is missing" in last
    assert "--data" in last and "RBPSOLVE_DATA" in last and "`root`" not in last and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # nothing written into the current directory


def test_download_is_refused_clearly_where_there_is_no_mirror(capsys):
    with pytest.raises(SystemExit):
        cli.main(["task", "citation", "--download"])
    assert "--download: the Planetoid files cannot be fetched" in capsys.readouterr().err


def test_progress_bars_only_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

        def write(self, text):
            pass

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Stream(False))
    bar = _cli.progress_bar(total=3)
    assert type(bar).__name__ == "_NoBar"
    bar.update()
    bar.close()
    monkeypatch.setattr(sys, "stderr", Stream(True))
    bar = _cli.progress_bar(total=3, desc="x")
    assert type(bar).__name__ == "tqdm"
    bar.close()
    assert type(_cli.progress_bar(total=3, enabled=False)).__name__ == "_NoBar"


def _mnist():
    from rbpsolve.adapters.tasks.data import data_root

    return (data_root(None) / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_a_tiny_run_writes_only_where_asked_and_prints_clean_lines(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    if not _mnist():
        pytest.skip("MNIST not in the data directory (set RBPSOLVE_DATA to ../shared/data)")
    monkeypatch.chdir(tmp_path)
    argv = ["task", "hopfield", "--quick", "--iters", "3", "--method", "neumann", "--truncate", "2"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert list(tmp_path.iterdir()) == []  # no --out: nothing written
    assert "no output files" in err and "\r" not in out
    assert out.startswith("method neumann_rbp, truncation 2, 3 steps, ")
    assert not re.search(r"\d\.\d{5,}", out), out  # formatted floats
    assert cli.main(argv + ["--out", "run"]) == 0
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    assert record["config"]["method"] == "neumann_rbp" and "writing to run/" in capsys.readouterr().err


# -- run files written with the older names -----------------------------------------------------------------------


def test_old_hopfield_results_still_read():
    pytest.importorskip("torch")
    from rbpsolve.adapters.tasks.hopfield.reproduce import canonical_trials, summarize, table_markdown

    data = json.loads((DOCS / "hopfield" / "results.json").read_text())
    assert {"neumann", "cg"} <= {t["config"]["method"] for t in data["trials"]}  # written before the table
    cells = summarize(data["trials"])
    assert ("neumann_rbp", 20) in cells and ("cg_rbp", 20) in cells and ("neumann", 20) not in cells
    assert "| Neumann-RBP (ours) | paper" in table_markdown(canonical_trials(data["trials"]), "x")


def test_old_hyperopt_results_still_read():
    from rbpsolve.adapters.tasks.hyperopt import report

    # A run file as written before the shared method table (old names), built from the
    # committed one (which has since been merged anew and names methods canonically).
    data = json.loads((DOCS / "hyperopt" / "results.json").read_text())
    for cell in data["cells"]:
        cell["methods"] = {("neumann" if m == "neumann_rbp" else m): dict(rec, method="neumann" if m == "neumann_rbp"
                                                                           else rec.get("method"))
                           for m, rec in cell["methods"].items()}
    assert "neumann" in data["cells"][0]["methods"]
    merged = report.merge([data])
    assert "neumann_rbp" in merged["cells"][0]["methods"] and "neumann" not in merged["cells"][0]["methods"]
    assert "| Neumann-RBP |" in report.summary_table(merged)


def test_old_citation_run_names_are_mapped(tmp_path):
    pytest.importorskip("torch")
    from rbpsolve.adapters.tasks.citation.report import load_runs

    (tmp_path / "cora").mkdir()
    (tmp_path / "cora" / "neumann-seed0.json").write_text(json.dumps({"config": {"method": "neumann"}}))
    assert load_runs(tmp_path)[0]["config"]["method"] == "neumann_rbp"


def _readme_commands():
    """Every ``rbpsolve task|reproduce`` command line of docs/results/**/README.md (continuations joined)."""
    out = []
    for readme in sorted(DOCS.glob("**/README.md")):
        text = readme.read_text().replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split(" # ")[0].strip()
            match = re.match(r"^(?:RBPSOLVE_DATA=\S+ )?rbpsolve (task|reproduce) (\w+) (.*)$", line)
            if match:
                out.append((readme.relative_to(DOCS).as_posix(), *match.groups()))
    return out


@pytest.mark.parametrize("readme,command,name,rest", _readme_commands())
def test_the_results_readmes_command_lines_still_parse(readme, command, name, rest, monkeypatch):
    import shlex

    # placeholders of the READMEs (M_K_S: method, truncation, seed; D: data set), and "..." for "and so on"
    words = [{"M": "neumann", "K": "20", "S": "0", "D": "cora"}.get(w, w) for w in shlex.split(rest) if w != "..."]
    parser = _parser(monkeypatch, command, name)
    parser.parse_args(words)  # an unknown or renamed option is argparse's SystemExit(2)
