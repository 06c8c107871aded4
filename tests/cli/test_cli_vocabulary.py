"""One vocabulary across every verb: help on every option, one spelling each, the option table.

The command tree is walked as Click builds it (``typer.main.get_command``), so a new verb or
option is checked without being listed here. Old spellings (``medfleet.cli.deprecated``)
must still work for one release, each with a deprecation message on stderr.
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from medfleet.cli import app
from medfleet.cli.deprecated import RenamedOptionsCommand, old_spellings, translate_args

REPO = Path(__file__).resolve().parents[2]
CLI_DIR = REPO / "src" / "medfleet" / "cli"
TABLE = REPO / "docs" / "cli" / "README.md"


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> dict[str, click.Command]:
    if isinstance(command, click.Group):
        found: dict[str, click.Command] = {}
        for name, sub in command.commands.items():
            found.update(_walk(sub, (*path, name)))
        return found
    return {" ".join(path): command}


VERBS = _walk(typer.main.get_command(app))


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def _long(option: click.Option) -> str:
    return next(o for o in option.opts if o.startswith("--"))


#: Canonical spelling -> other spellings of the same thing, which no verb may use.
SYNONYMS = {
    "--n-resamples": {"--resamples", "--n-bootstrap", "--bootstrap-resamples"},
    "--model": {"--checkpoint", "--synth-model", "--model-dir", "--weights-file"},
    "--manifest": {"--real", "--manifest-file", "--data"},
    "--tasks": {"--task-names", "--task-list"},
    "--image-size": {"--size", "--img-size", "--input-size", "--resolution"},
    "--sample-steps": {"--sampling-steps", "--denoising-steps", "--inference-steps"},
    "--device": {"--gpu", "--cuda", "--accelerator"},
    "--threads": {"--num-threads", "--n-threads"},
    "--format": {"--output-format", "--json"},
}
#: (verb, spelling) where a listed synonym means something else (see docs/cli/README.md).
OTHER_MEANING = {("data phantoms", "--size")}
#: Options with one meaning everywhere, hence one minimum and one default.
ONE_LIMIT = ("--n-resamples", "--engine", "--seed", "--image-size", "--sample-steps")
ONE_DEFAULT = ("--n-resamples", "--engine")
#: Verbs that train or run a model through a library call that can place it.
MODEL_VERBS = {
    "train",
    "predict",
    "federate",
    "federate-study",
    "synth train",
    "synth sample",
    "synth augment-study",
}


# ------------------------------------------------------------------ help text


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_option_and_argument_is_explained(verb: str) -> None:
    command = VERBS[verb]
    assert (command.help or "").strip(), f"{verb} has no help text"
    for option in _options(command):
        assert (option.help or "").strip(), f"{verb} {_long(option)} has no help text"
    for argument in command.params:
        if isinstance(argument, click.Argument):
            # (Typer 0.20 with Click 8.5 drops an argument's own help, so the verb's text
            # explains each argument by its metavar)
            name = (argument.name or "").upper()
            assert name in (command.help or ""), f"{verb}'s help does not explain {name}"


def test_root_help_describes_the_demo_with_its_federated_stage() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    line = " ".join(result.stdout.split())
    demo = line[line.index("demo") : line.index("train ")]
    assert "federated" in demo and "monitoring" in demo, demo
    stages = next(p for p in VERBS["demo"].params if p.name == "stages")
    assert "federated" in (stages.help or "")


# ------------------------------------------------------------------ one spelling


def test_no_verb_spells_an_option_of_the_vocabulary_another_way() -> None:
    found = []
    for verb, command in VERBS.items():
        for option in _options(command):
            for spelling in option.opts + option.secondary_opts:
                for canonical, others in SYNONYMS.items():
                    if spelling in others and (verb, spelling) not in OTHER_MEANING:
                        found.append(f"{verb} {spelling} (use {canonical})")
    assert not found, found


def test_one_parameter_one_spelling_across_verbs() -> None:
    by_name: dict[str, set[str]] = {}
    shorts: dict[str, set[tuple[str, ...]]] = {}
    for command in VERBS.values():
        for option in _options(command):
            name = "format" if option.name in ("fmt", "output_format") else str(option.name)
            by_name.setdefault(name, set()).add(_long(option))
            short = tuple(sorted(o for o in option.opts if not o.startswith("--")))
            shorts.setdefault(_long(option), set()).add(short)
    assert {n: s for n, s in by_name.items() if len(s) > 1} == {}
    assert {o: s for o, s in shorts.items() if len(s) > 1} == {}


def _limits(flag: str) -> dict[str, tuple[object, object]]:
    out = {}
    for verb, command in VERBS.items():
        for option in _options(command):
            if _long(option) == flag:
                out[verb] = (getattr(option.type, "min", None), option.default)
    return out


@pytest.mark.parametrize("flag", ONE_LIMIT)
def test_one_minimum_for_one_meaning(flag: str) -> None:
    limits = _limits(flag)
    assert len(limits) >= 2, f"{flag} is no shared option any more"
    assert len({m for m, _ in limits.values()}) == 1, limits


@pytest.mark.parametrize("flag", ONE_DEFAULT)
def test_one_default_for_one_meaning(flag: str) -> None:
    limits = _limits(flag)
    assert len({str(d) for _, d in limits.values()}) == 1, limits


def test_the_shared_defaults() -> None:
    assert set(_limits("--n-resamples").values()) == {(10, 1000)}
    assert {str(d) for _, d in _limits("--engine").values()} == {"inprocess"}


def test_every_model_verb_takes_a_device() -> None:
    with_device = {v for v, c in VERBS.items() if "--device" in map(_long, _options(c))}
    assert with_device == MODEL_VERBS


# ------------------------------------------------------------------ the option table


def _table() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`--"):
            flag = re.match(r"`(--[a-z0-9-]+)", cells[0])
            assert flag is not None, line
            rows[flag.group(1)] = (cells[2], cells[3])
    return rows


def test_the_table_lists_every_option_with_its_verbs_and_file() -> None:
    rows = _table()
    problems = []
    for verb, command in VERBS.items():
        for option in _options(command):
            flag = _long(option)
            if flag not in rows:
                problems.append(f"{flag} ({verb}) is not in {TABLE.name}")
                continue
            verbs = rows[flag][0]
            if verbs.startswith("every verb"):
                listed = verbs.partition("except")[2]
                if f"`{verb}`" in listed:
                    problems.append(f"{flag}: {verb} is listed as an exception")
            elif f"`{verb}`" not in verbs:
                problems.append(f"{flag}: {verb} missing from its verbs")
    for flag, (_, files) in rows.items():
        names = re.findall(r"`([a-z_]+\.py)`", files)
        assert names, f"{flag}: no file"
        texts = [(CLI_DIR / n).read_text() for n in names]
        if not any(re.search(re.escape(f'"{flag}') + r'["/]', t) for t in texts):
            problems.append(f"{flag}: none of {names} defines it")
    known = {_long(o) for c in VERBS.values() for o in _options(c)}
    problems += [f"{flag} is in the table but no verb takes it" for flag in set(rows) - known]
    assert not problems, problems


# ------------------------------------------------------------------ old spellings

RENAMED = [
    (verb, old, new)
    for verb, command in sorted(VERBS.items())
    for old, new in old_spellings(command).items()
]


def test_the_old_spellings() -> None:
    assert {(v, o) for v, o, _ in RENAMED} == {
        ("predict", "--checkpoint"),
        ("federate-study", "--positive-class"),
        ("report compare", "--resamples"),
        ("synth quality", "--real"),
        ("synth quality", "--size"),
        ("synth reader-kit", "--real"),
        ("synth sample", "--steps"),
        ("synth augment-study", "--synth-model"),
    }
    validate = VERBS["data validate"]
    assert isinstance(validate, RenamedOptionsCommand) and validate.positional == "--manifest"


@pytest.mark.parametrize(("verb", "old", "new"), RENAMED, ids=[f"{v}:{o}" for v, o, _ in RENAMED])
def test_an_old_spelling_is_no_option_but_documented(verb: str, old: str, new: str) -> None:
    command = VERBS[verb]
    spellings = {s for o in command.params for s in getattr(o, "opts", ())}
    assert old not in spellings and new in spellings
    assert old in (command.epilog or "")
    table = TABLE.read_text()
    assert f"| `{old}`" in table and f"`{verb}`" in table


def _context_with(command: click.Command, verb: str, given: list[str]) -> click.Context:
    """Parse ``given`` plus a placeholder for every other required parameter."""
    args = list(given)
    translated, _ = translate_args(given, old_spellings(command))
    named = {a.partition("=")[0] for a in translated}
    for param in command.params:
        if isinstance(param, click.Argument) and param.required:
            args.insert(0, "x")
        elif isinstance(param, click.Option) and param.required and not set(param.opts) & named:
            args += [_long(param), "1"]
    return command.make_context(verb.split()[-1], args)


VALUES = {
    "--resamples": "200",
    "--size": "64",
    "--steps": "7",
    "--positive-class": "lesion=malignant",
}


@pytest.mark.parametrize(("verb", "old", "new"), RENAMED, ids=[f"{v}:{o}" for v, o, _ in RENAMED])
def test_an_old_spelling_still_works_and_warns(
    verb: str, old: str, new: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = VERBS[verb]
    value = VALUES.get(old, "some/where")
    target = next(p for p in command.params if new in getattr(p, "opts", ()))
    for given in ([old, value], [f"{old}={value}"]):
        context = _context_with(command, verb, given)
        assert str(context.params[str(target.name)]) == value
        err = capsys.readouterr().err
        assert f"warning: {old} is deprecated; use {new}" in err
    context = _context_with(command, verb, [new, value])
    assert str(context.params[str(target.name)]) == value
    assert "deprecated" not in capsys.readouterr().err


def test_an_old_spelling_is_checked_by_the_new_option() -> None:
    result = CliRunner().invoke(
        app, ["synth", "sample", "--model", "m", "--n", "1", "--out", "o", "--steps", "0"]
    )
    assert result.exit_code == 2
    assert "--steps is deprecated; use --sample-steps" in result.stderr
    assert "--sample-steps" in result.stderr.split("deprecated", 1)[1]


def test_report_compare_with_the_old_resamples(tmp_path: Path) -> None:
    import json

    truth = tmp_path / "gt.csv"
    truth.write_text("case_id,value\n" + "".join(f"c{i},{i}\n" for i in range(6)))
    runs = []
    for name, shift in (("a", 0.5), ("b", 0.1)):
        pred = tmp_path / f"{name}.csv"
        pred.write_text("case_id,value\n" + "".join(f"c{i},{i + shift}\n" for i in range(6)))
        out = tmp_path / name
        scored = CliRunner().invoke(
            app,
            ["evaluate", "--task-type", "regression", "--pred", str(pred), "--gt", str(truth),
             "--out", str(out), "--no-report"],
        )  # fmt: skip
        assert scored.exit_code == 0, scored.output
        runs.append(str(out))
    old = ["report", "compare", *runs, "--out", str(tmp_path / "old"), "--resamples", "200"]
    new = ["report", "compare", *runs, "--out", str(tmp_path / "new"), "--n-resamples", "200"]
    results = [CliRunner().invoke(app, [*args, "--format", "json"]) for args in (old, new)]
    assert [r.exit_code for r in results] == [0, 0], [r.output for r in results]
    assert "warning: --resamples is deprecated; use --n-resamples" in results[0].stderr
    assert "deprecated" not in results[1].stderr
    compared = [json.loads(r.stdout)["comparisons"] for r in results]
    assert compared[0] == compared[1]


def test_predict_with_the_old_checkpoint_names_the_model(tmp_path: Path) -> None:
    missing = tmp_path / "no-model"
    manifest = tmp_path / "m.yaml"
    manifest.write_text("x")
    args = ["predict", "--checkpoint", str(missing), "-m", str(manifest), "--out"]
    result = CliRunner().invoke(app, [*args, str(tmp_path / "p")])
    assert "warning: --checkpoint is deprecated; use --model" in result.stderr
    assert "No such option" not in result.stderr and result.exit_code != 2


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medfleet.data.phantoms import PhantomConfig, generate_phantoms

    folder = tmp_path_factory.mktemp("vocabulary")
    return generate_phantoms(
        folder, PhantomConfig(tasks=["lesion_cls"]), sites=2, cases_per_site=3, size=32
    )


def test_validate_with_a_positional_manifest(phantoms: Path) -> None:
    old = CliRunner().invoke(app, ["data", "validate", str(phantoms), "--format", "json"])
    new = CliRunner().invoke(app, ["data", "validate", "-m", str(phantoms), "--format", "json"])
    assert old.exit_code == new.exit_code == 0, old.output
    assert old.stdout == new.stdout
    assert "warning: a positional manifest is deprecated; use --manifest" in old.stderr
    assert "deprecated" not in new.stderr


def test_validate_refuses_the_manifest_twice(phantoms: Path) -> None:
    result = CliRunner().invoke(app, ["data", "validate", str(phantoms), "-m", str(phantoms)])
    assert result.exit_code == 2
    assert "give --manifest once" in result.stderr


# ------------------------------------------------------------------ the translation


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--real", "a", "--n", "2"], ["--manifest", "a", "--n", "2"]),
        (["--real=a"], ["--manifest=a"]),
        (["--n", "--real"], ["--n", "--real"]),  # a value, even one that looks like an option
        (["--", "--real"], ["--", "--real"]),  # after --, nothing is an option
        (["-m", "--real"], ["-m", "--real"]),
    ],
)
def test_translate_args_replaces_options_only(args: list[str], expected: list[str]) -> None:
    values = frozenset({"--n", "-m", "--manifest"})
    assert translate_args(args, {"--real": "--manifest"}, value_options=values)[0] == expected


def test_translate_args_moves_a_positional_value_to_its_option() -> None:
    values = frozenset({"--format", "--manifest", "-m"})
    out, notices = translate_args(
        ["--format", "json", "m.yaml"], {}, positional="--manifest", value_options=values
    )
    assert out == ["--format", "json", "--manifest", "m.yaml"]
    assert notices == ["a positional manifest is deprecated; use --manifest MANIFEST"]
    out, _ = translate_args(["--", "-odd.yaml"], {}, positional="--manifest")
    assert out == ["--manifest", "-odd.yaml"]
