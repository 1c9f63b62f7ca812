"""Every shell command in README.md and docs/*.md (not docs/notes/, which keep commands as they were run then), so the
docs cannot drift from the commands again.

Each command is taken from its ```bash block as the shell would split it (continuations joined, comments dropped,
`for` loops expanded) and is
- parse-checked (every command, fast): the program exists, and its arguments parse with the program's own parser
  (launchers' options with accelerate's and torchrun's parsers, the module's with its own); a command elided with
  `...` has its named options checked, and `[--option value]` is checked with the option given;
- run as written (`RUNS`, slow), in a scratch folder holding tiny photos, with the checkpoints/ folder linked in
  read-only: only `SHRINK`'s flags are rewritten (training steps), and `[--option value]` is left out;
- or, for what is not ours to run here (make, pip, the Hub's CLI, curl against a server, copies of outputs), checked
  as far as it can be (`OTHER_PROGRAMS`).
A command no rule knows fails `test_every_documented_command_is_known`: decide how it is tested when adding it.
"""

import argparse
import contextlib
import importlib
import importlib.util
import inspect
import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState
from PIL import Image

from conftest import REPO_ROOT

DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
CONSOLE_SCRIPTS = PYPROJECT["scripts"]
ENVIRONMENT_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PYTHONS = ("python", "python3", ".venv/bin/python")
# The only rewriting a command that runs gets: training lasts a few steps instead of hours.
SHRINK = {"--steps": "2", "--warmup-steps": "1", "--val-every": "1"}


@dataclass(frozen=True)
class Command:
    document: str
    line: int
    words: tuple[str, ...]
    stdin: str | None = field(default=None, compare=False)  # a here-document's body
    repeat: bool = field(default=False, compare=False)  # a `for` loop's body for its second value on

    def __str__(self) -> str:
        return f"{self.document}:{self.line}: {shlex.join(self.words)}"


def bash_blocks(path: Path):
    """(first line number, lines) of every ```bash block."""
    block, start = None, 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.lstrip().startswith("```"):
            if block is None and line.strip() == "```bash":
                block, start = [], number + 1
            elif block is not None:
                yield start, block
                block = None
        elif block is not None:
            block.append(line)


def commands_in(path: Path) -> list[Command]:
    document = path.relative_to(REPO_ROOT).as_posix()
    found = []
    for start, lines in bash_blocks(path):
        index, loop = 0, None
        while index < len(lines):
            number, text = start + index, lines[index]
            while text.endswith("\\") and index + 1 < len(lines):
                index += 1
                text = text[:-1] + " " + lines[index].strip()
            index += 1
            stdin = None
            heredoc = re.search(r"<<'(\w+)'", text)
            if heredoc:
                end = lines.index(heredoc.group(1), index)
                stdin, index = "\n".join(lines[index:end]) + "\n", end + 1
                text = text[: heredoc.start()]
            words = shlex.split(text, comments=True)
            if not words:
                continue
            if words[0] == "for":  # for NAME in VALUES; do
                loop = (words[1], [word.rstrip(";") for word in words[3 : words.index("do")]], [])
                continue
            if loop is not None:
                if words == ["done"]:
                    name, values, body = loop
                    for position, value in enumerate(values):
                        for body_number, body_words in body:
                            expanded = tuple(word.replace(f"${name}", value) for word in body_words)
                            found.append(Command(document, body_number, expanded, repeat=position > 0))
                    loop = None
                else:
                    loop[2].append((number, words))
                continue
            found.append(Command(document, number, tuple(words), stdin))
    return found


COMMANDS = [command for path in DOCUMENTS for command in commands_in(path)]


# ------------------------------------------------------------------------------------------------ what a command is
@dataclass
class Target:
    """The program of ours a command ends up running, and its arguments."""

    kind: str  # "script" (console script), "module" (python -m), "file" (python path/to/script.py)
    name: str
    arguments: list[str]


def without_prefixes(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading VAR=value assignments and `nice [-n N]` taken off: (environment, the command)."""
    environment = {}
    while words and ENVIRONMENT_ASSIGNMENT.match(words[0]) and len(words) > 1:
        name, value = words[0].split("=", 1)
        if value.startswith("$("):  # NAME=$(command ...): the command
            return environment, [value[2:], *words[1:]]
        environment[name], words = value, words[1:]
    if words and words[0] == "nice":
        words = words[3:] if words[1:2] == ["-n"] else words[1:]
    return environment, words


def launched_target(words: list[str]) -> Target | None:
    """The target of an `accelerate launch` or torchrun command, its launcher options checked by their own parser."""
    if words[:2] == ["accelerate", "launch"]:
        from accelerate.commands.launch import launch_command_parser

        options = launch_command_parser().parse_args(words[2:])
        kind = "module" if options.module else "script" if options.no_python else "file"
        return Target(kind, options.training_script, list(options.training_script_args))
    if words[0] == "torchrun" or (words[0] in PYTHONS and words[1:3] == ["-m", "torch.distributed.run"]):
        from torch.distributed.run import get_args_parser

        options = get_args_parser().parse_args(words[1:] if words[0] == "torchrun" else words[3:])
        kind = "module" if options.module else "script" if options.no_python else "file"
        return Target(kind, options.training_script, list(options.training_script_args))
    return None


def target_of(words: list[str]) -> Target | None:
    launched = launched_target(words)
    if launched is not None:
        return launched
    if words[0] in CONSOLE_SCRIPTS:
        return Target("script", words[0], words[1:])
    if words[0] in PYTHONS and words[1:2] == ["-m"] and words[2] != "pytest":
        return Target("module", words[2], words[3:])
    if words[0] in PYTHONS and len(words) > 1 and words[1].endswith(".py") and words[1] != "app.py":
        return Target("file", words[1], words[2:])
    return None


def check_other_program(words: list[str]) -> None:
    """What can be checked of a command that is not ours to run here; raises AssertionError when it is wrong, and
    LookupError when no rule knows the program."""
    program = words[0]
    if program == "make":
        targets = re.findall(r"^([\w-]+):", (REPO_ROOT / "Makefile").read_text(), flags=re.MULTILINE)
        assert set(words[1:]) <= set(targets), f"the Makefile has no target {set(words[1:]) - set(targets)}"
    elif program == "pip" and words[1] == "install":
        if "-c" in words:
            assert (REPO_ROOT / words[words.index("-c") + 1]).is_file(), "the constraints file is missing"
        extras = re.findall(r"\.\[([\w,]+)\]", " ".join(words))
        for extra in ",".join(extras).split(",") if extras else []:
            assert extra in PYPROJECT["optional-dependencies"], f"pyproject.toml defines no extra {extra!r}"
    elif program in PYTHONS and words[1:] in (["app.py"],):
        assert (REPO_ROOT / "app.py").is_file()  # serves the app: tests/test_app.py starts real servers
    elif program in PYTHONS and words[1:3] == ["-m", "pytest"]:
        for name in words[3:]:
            assert name.startswith("-") or (REPO_ROOT / name).exists(), f"{name} does not exist"
    elif program in PYTHONS and words[1:2] == ["-"]:
        pass  # a here-document: run by test_documented_python_snippets_run
    elif program == "hf":
        pass  # the Hub's own CLI, on an account (docs/DEPLOYMENT.md): nothing of ours to run offline
    elif program == "curl" or (ENVIRONMENT_ASSIGNMENT.match(program) and len(words) == 1):
        pass  # the app's HTTP API against a running server (URL=..., EVENT=$(curl ...)): tests/test_app.py calls it
    elif program in ("cp", "cat", "tar"):
        pass  # copies of what the commands before them wrote (FILES_AT: what a lent GPU sends back)
    else:
        raise LookupError(f"no rule says how to test {program!r}: add one here")


# ------------------------------------------------------------------------------------------------ parsing
class Parsed(BaseException):
    """Raised in place of running a program once its parser is known (BaseException: no `except Exception` in the
    program catches it)."""

    def __init__(self, parser, namespace=None):
        self.parser, self.namespace = parser, namespace


@contextlib.contextmanager
def stop_at_parsing(parse: bool):
    """Runs a program up to its argument parsing only: then raises Parsed with the parser (and, with `parse`, the
    namespace, any unrecognised argument being an error as in parse_args)."""
    original = argparse.ArgumentParser.parse_known_args

    def parse_known_args(self, args=None, namespace=None):
        if not parse:
            raise Parsed(self)
        namespace, extras = original(self, args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        raise Parsed(self, namespace)

    argparse.ArgumentParser.parse_known_args = parse_known_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_known_args = original


def entry_point(target: Target):
    """The function a target runs: a console script's, a module's main, or a script file's main (loaded by path)."""
    if target.kind == "script":
        module, function = CONSOLE_SCRIPTS[target.name].split(":")
        return getattr(importlib.import_module(module), function)
    if target.kind == "module":
        return importlib.import_module(target.name).main
    path = REPO_ROOT / target.name
    assert path.is_file(), f"{target.name} does not exist"
    spec = importlib.util.spec_from_file_location(f"documented_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def call(function, arguments: list[str], monkeypatch):
    """Calls a program's main as its command line would: with the arguments when it takes them, else in sys.argv."""
    monkeypatch.setattr(sys, "argv", ["documented-command", *arguments])
    if inspect.signature(function).parameters:
        return function(arguments)
    return function()


def placeholders_filled(arguments: list[str]) -> list[str]:
    """`[--option value]` as the option given."""
    return [word.strip("[]") for word in arguments]


def check_parses(target: Target, monkeypatch) -> None:
    function = entry_point(target)
    elided = "..." in target.arguments
    arguments = [word for word in placeholders_filled(target.arguments) if word != "..."]
    try:
        with stop_at_parsing(parse=not elided):
            call(function, arguments, monkeypatch)
    except Parsed as parsed:
        if elided:
            known = parsed.parser._option_string_actions
            unknown = [word for word in arguments if word.startswith("-") and word.split("=")[0] not in known]
            assert not unknown, f"{target.name} has no option {unknown}"
        return
    except SystemExit as error:
        raise AssertionError(f"{target.name} {shlex.join(arguments)} does not parse (exit {error.code})") from None
    raise AssertionError(f"{target.name} returned without parsing its arguments with argparse")


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_documented_command_is_known_and_parses(command, monkeypatch, capsys):
    _, words = without_prefixes(list(command.words))
    target = target_of(words)
    if target is None:
        check_other_program(words)
        return
    if target.kind == "module" and target.name.startswith("mprnet_hf.") and target.name not in PACKAGE_MODULES:
        pytest.fail(f"{command}: `python -m {target.name}` names no module of mprnet_hf")
    check_parses(target, monkeypatch)


PACKAGE_MODULES = {
    ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    for path in (REPO_ROOT / "mprnet_hf").rglob("*.py")
    if path.stem != "__init__"
}


def test_the_documents_hold_the_commands_this_test_knows_about():
    """The extraction itself: the README's three mprnet-restore examples and the loops of TRAINING.md come out whole."""
    readme = [shlex.join(command.words) for command in COMMANDS if command.document == "README.md"]
    assert sum(text.startswith("mprnet-restore ") for text in readme) == 3
    training = [command for command in COMMANDS if command.document == "docs/TRAINING.md"]
    reproduced = [command.words for command in training if "runs/reproduce/mprnet-derain-small" in command.words]
    assert reproduced and all("$task" not in " ".join(words) for words in reproduced)
    assert all(not word.endswith("\\") for command in COMMANDS for word in command.words)


# ------------------------------------------------------------------------------------------------ --help
def test_every_console_script_help_runs_as_installed(capsys):
    """Each console script's --help through the entry point the installed package declares (what its launcher in
    .venv/bin calls), which must be pyproject.toml's: a stale install would run another function."""
    installed = {
        entry.name: entry for entry in metadata.entry_points(group="console_scripts") if entry.name in CONSOLE_SCRIPTS
    }
    assert {name: entry.value for name, entry in installed.items()} == CONSOLE_SCRIPTS
    for name, entry in installed.items():
        with pytest.raises(SystemExit) as exit_info:
            entry.load()(["--help"])
        assert exit_info.value.code == 0, name
        assert "usage:" in capsys.readouterr().out, name


def strings_with_joined_lines(path: Path) -> list[int]:
    """Lines of plain (not raw) strings holding a backslash-newline, which joins the lines: a --help example written
    across lines with `\\` would print as one."""
    import io
    import tokenize

    lines = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        prefix = re.match(r"[a-zA-Z]*", token.string).group().lower()
        continued = re.search(r"(?<!\\)(\\\\)*\\\n", token.string)  # an odd run of backslashes, then newline
        if token.type == tokenize.STRING and continued and "r" not in prefix:
            lines.append(token.start[0])
    return lines


def test_help_texts_keep_their_line_continuations():
    files = [*(REPO_ROOT / "mprnet_hf").rglob("*.py"), *(REPO_ROOT / "scripts").glob("*.py")]
    files += [*(REPO_ROOT / "benchmarks").glob("*.py"), REPO_ROOT / "app.py"]
    joined = {path.relative_to(REPO_ROOT).as_posix(): strings_with_joined_lines(path) for path in files}
    assert {name: lines for name, lines in joined.items() if lines} == {}


# ------------------------------------------------------------------------------------------------ running
def tiny_photo(path: Path, size=(64, 48), seed=0) -> None:
    rng = np.random.default_rng(seed)
    gradient = np.linspace(30, 220, size[0])[None, :, None] + np.zeros((size[1], 1, 3))
    pixels = np.clip(gradient + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **({"quality": 95} if path.suffix == ".jpg" else {}))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A scratch folder laid out as the docs assume: photos, development and training photos (tiny), the bundled
    checkpoints (linked, read-only) and an official-layout checkpoint to convert."""
    from mprnet_hf.hub.convert import export_to_official

    root = tmp_path_factory.mktemp("documented")
    (root / "checkpoints").symlink_to(REPO_ROOT / "checkpoints", target_is_directory=True)
    tiny_photo(root / "photo.jpg")
    tiny_photo(root / "photos" / "a.png", seed=1)
    tiny_photo(root / "photos" / "nested" / "b.jpg", seed=2)
    tiny_photo(root / "scans" / "2024" / "c.tif", seed=3)
    for split, count, size in (("train", 2, (160, 160)), ("val", 2, (64, 48))):
        for name in ("dev", "photos"):
            folder = root / "data" / name / split
            for index in range(count):
                tiny_photo(folder / f"{index}.png", size, seed=10 + index)
    export_to_official(str(REPO_ROOT / "checkpoints" / "mprnet-deblur-small"), root / "model_deblurring.pth")
    return root


def runs_here(command: Command, target: Target | None) -> bool:
    """Whether `command` runs in the workspace: ours, offline, on inputs the workspace holds, in seconds once shrunk."""
    if target is None or "..." in target.arguments or target.kind == "file" or command.repeat:
        return False  # a loop runs for its first value: the others differ in the task only (parse-checked)
    if launched_target(list(without_prefixes(list(command.words))[1])) is not None:
        return False  # many processes: tests/test_restore_collection.py and test_training.py launch them
    name = target.name if target.kind == "module" else CONSOLE_SCRIPTS[target.name].split(":")[0]
    arguments = target.arguments
    if name.startswith("mprnet_hf.cli") or name == "mprnet_hf.restore":
        return True
    if name == "mprnet_hf.hub.convert":  # from the workspace's files, not from a Hub id
        source = value_of(arguments, "--to-official") or value_of(arguments, "--checkpoint")
        return source.startswith("checkpoints/") or source.endswith(".pth")
    if name == "mprnet_hf.evaluation.evaluate":  # on the workspace's photos, not on a paired test set
        return value_of(arguments, "--data").startswith("data/")
    if name == "mprnet_hf.training.interpolate":
        return True
    if name == "mprnet_hf.training.train":
        # bf16 autocast on a CPU without native bf16 took 3 minutes for two steps (2-core AVX2 machine, 2026-12-07):
        # those commands are parse-checked only.
        bf16 = value_of(arguments, "--mixed-precision") == "bf16"
        return "--train-dir" in arguments and "--paired-dir" not in arguments and not bf16
    return False


def value_of(arguments: list[str], option: str) -> str:
    return arguments[arguments.index(option) + 1] if option in arguments else ""


def shrunk(arguments: list[str]) -> list[str]:
    """`SHRINK`'s flags set to their small values, and `[--option value]` left out."""
    result, optional = [], False
    for word in arguments:
        if word.startswith("["):
            optional = True
        if not optional:
            result.append(word)
        if word.endswith("]"):
            optional = False
    for flag, value in SHRINK.items():
        if flag in result:
            result[result.index(flag) + 1] = value
    return result


RUNS = [command for command in COMMANDS if runs_here(command, target_of(without_prefixes(list(command.words))[1]))]


def test_the_commands_that_run_cover_every_console_script_that_can():
    ran = {target_of(without_prefixes(list(command.words))[1]).name for command in RUNS}
    assert {"mprnet-restore", "mprnet-convert", "mprnet_hf.hub.convert", "mprnet_hf.evaluation.evaluate"} <= ran
    assert "mprnet_hf.training.train" in ran


@pytest.mark.slow
def test_documented_commands_run_as_written(workspace, monkeypatch, capsys):
    """In document order (later commands use what earlier ones wrote, as a reader would run them), each in the
    workspace; every exit status 0, and every file written with ordinary permissions."""
    monkeypatch.chdir(workspace)
    threads = torch.get_num_threads()
    umask = os.umask(0)
    os.umask(umask)
    done, failures, timings = set(), [], []
    for command in RUNS:
        if command.words in done:  # README and docs/CLI.md show the same examples
            continue
        done.add(command.words)
        environment, words = without_prefixes(list(command.words))
        target = target_of(words)
        start = time.perf_counter()
        with monkeypatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            try:
                returned = call(entry_point(target), shrunk(target.arguments), patch)
                # A console script exits with what its function returns; `python -m` ignores what main returns,
                # unless it is an exit status.
                status = returned if target.kind == "script" or isinstance(returned, int) else None
            except SystemExit as error:
                status = error.code
            except Exception as error:  # noqa: BLE001 - every failing command is reported at the end
                status = f"{type(error).__name__}: {error}"
            finally:
                torch.set_num_threads(threads)
                AcceleratorState._reset_state(reset_partial_state=True)  # each training is a process of its own
        output = capsys.readouterr()
        timings.append(f"{time.perf_counter() - start:5.1f} s  {command}")
        if status not in (0, None):
            failures.append(f"{command}\n  -> {str(status)[:300]}\n{output.err[-1500:]}")
    print("\n".join(timings))
    assert not failures, "\n".join(failures)
    # Training state (runs/*-state, for --resume) is the run's own: accelerate writes it owner-only, and it stays so.
    written = [
        path
        for path in workspace.rglob("*")
        if path.is_file() and not path.is_symlink() and not path.parent.name.endswith("-state")
    ]
    assert (workspace / "restored-auto").is_dir() and (workspace / "mprnet-deblur" / "config.json").is_file()
    modes = {path.relative_to(workspace).as_posix(): oct(path.stat().st_mode & 0o777) for path in written}
    assert {name: mode for name, mode in modes.items() if mode != oct(0o666 & ~umask)} == {}


@pytest.mark.slow
def test_documented_python_snippets_run(monkeypatch, capsys):
    """The here-documents (`python - <<'PY'`): run as the shell would feed them, printing what the docs describe."""
    snippets = [command for command in COMMANDS if command.stdin is not None]
    assert snippets
    for command in snippets:
        result = subprocess.run(
            [sys.executable, "-"], input=command.stdin, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"
        assert result.stdout.strip(), command


@pytest.mark.parametrize(
    ("module", "arguments", "missing", "extra"),
    [
        (
            "mprnet_hf.speed.export_onnx",
            ["--model", "checkpoints/mprnet-deblur-small", "--output", "x.onnx"],
            "onnx",
            "onnx",
        ),
        (
            "mprnet_hf.evaluation.evaluate",
            ["--data", "photos", "--foreign", "albumentations/rain-heavy-streaks"],
            "albumentations",
            "eval",
        ),
    ],
)
def test_a_command_without_its_extra_says_which_to_install(module, arguments, missing, extra, monkeypatch, capsys):
    """docs/CLI.md lists the extra each command needs; run without it, the command says so in one line."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == missing else find_spec(name, *rest)
    )
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(arguments)
    assert exit_info.value.code == 2
    assert f'pip install "mprnet-hf[{extra}]"' in capsys.readouterr().err
