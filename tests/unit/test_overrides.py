"""overrides: the one reader of `key=value` (Hydra's grammar), and its callers in the CLI, the sweeps'
preflight and the report of a search."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from specrep_cli import cli
from specrep_cli.errors import ConfigError, ReportError
from specrep_cli.overrides import assignment, chosen, command_line, in_hydra_order, last, parse, touches, value_text
from specrep_cli.report.search import read_search
from specrep_cli.rundir import unwritable_output_dir
from specrep_cli.sweeps import optuna_direction, representative_overrides


def test_keys_packages_prefixes_and_sweeps():
    add, sweep, delete, plain = parse(["+objective.mu@foo=2", "seed=0,1", "~tuned", "hydra/sweeper=optuna"])
    assert (add.key_or_group, add.package, add.is_add(), add.get_key_element()) == ("objective.mu", "foo", True,
                                                                                   "+objective.mu@foo")
    assert sweep.is_sweep_override() and not add.is_sweep_override()
    assert (delete.key_or_group, delete.is_delete()) == ("tuned", True)
    assert (plain.key_or_group, plain.value(), plain.is_hydra_override()) == ("hydra/sweeper", "optuna", True)


def test_the_value_as_typed():
    quoted, interpolated, listed, deleted, empty = parse(["hydra.run.dir='a b=c'", "hydra.run.dir=out/${now:%H}",
                                                          "trainer.loggers=[jsonl,tensorboard]", "~seed", "out="])
    assert value_text(quoted) == "'a b=c'" and quoted.value() == "a b=c"   # an = inside quotes stays in the value
    assert value_text(interpolated) == "out/${now:%H}"   # not escaped as Hydra's own str() of it is
    assert value_text(listed) == "[jsonl,tensorboard]"
    assert value_text(deleted) is None and value_text(empty) == ""


def test_last_chosen_and_touches():
    parsed = parse(["seed=1", "augmentation@_global_.x=simclr", "seed=2", "dataset.root=/d", "~encoder"])
    assert last(parsed, "seed").value() == 2 and chosen(parsed, "seed") == 2
    assert last(parsed, "resume") is None and chosen(parsed, "resume") is None and chosen(parsed, "encoder") is None
    assert touches(parsed, "augmentation") and touches(parsed, "dataset") and touches(parsed, "encoder")
    assert not touches(parse(["augmentations=1", "eval.augmentation.x=1"]), "augmentation")


def test_an_override_that_does_not_parse_is_named():
    with pytest.raises(ConfigError) as caught:
        parse(["seed=1", "hydra.run.dir=out$(touch X)", "trainer.epochs=[1"])
    assert str(caught.value) == ("cannot read the override 'hydra.run.dir=out$(touch X)': "
                                 "mismatched input '(' expecting <EOF>")


def test_the_command_line_is_read_as_hydra_reads_it():
    line = command_line(["--multirun", "--cfg", "job", "-p", "trainer", "seed=0,1", "objective=simclr"])
    assert line.overrides == ["seed=0,1", "objective=simclr"] and line.multirun and line.cfg == "job"
    assert command_line(["-cn", "eval", "seed=1"]).config_name == "eval"
    assert command_line(["--no-such-flag"]) is None and command_line(["--version"]) is None   # Hydra answers these


def test_the_cli_reads_renamed_keys_tuned_and_the_output_dir_through_the_parser(tmp_path: Path):
    assert cli.renamed(parse(["+eval.knn_k=5"])) == "eval.knn_k is now eval.knn.k: write eval.knn.k=5"
    assert cli.renamed(parse(["~eval.knn_k"])) == "eval.knn_k is now eval.knn.k: write eval.knn.k"
    assert cli.renamed(parse(["eval.knn.k=5"])) is None
    assert cli.chosen_tuned(parse(["tuned@_global_=shapes/pca_lars"])) is not None
    assert cli.chosen_tuned(parse(["optim.lr=0.3"])) is None
    unwritable = "/proc/no such dir/run"   # no directory can be made under /proc, not even by root
    parsed = parse([f"hydra.run.dir='{unwritable}'", f"hydra.sweep.dir={tmp_path}/sweep/${{now:%H}}"])
    problem = unwritable_output_dir(parsed, multirun=False)
    assert problem.startswith(f"cannot create the output directory {unwritable} (")   # the quotes read as Hydra does
    assert problem.endswith("set hydra.run.dir=PATH")
    assert unwritable_output_dir(parsed, multirun=True) is None   # the sweep dir, up to its interpolation
    assert unwritable_output_dir(parsed + parse(["hydra.mode=MULTIRUN"]), multirun=False) is None


def test_the_preflight_names_an_override_that_does_not_parse_even_with_flags_that_write_nothing():
    expected = "cannot read the override 'hydra.run.dir=out$(touch X)': mismatched input '(' expecting <EOF>"
    for flags in ([], ["--cfg", "job"], ["--multirun"]):
        assert cli.preflight("train", [*flags, "hydra.run.dir=out$(touch X)"]) == expected


def test_sweeps_recompose_each_override_from_its_parts():
    parsed = parse(["+objective.mu@x=interval(1,4)", "seed=0,1,2", "~trainer.compile", "hydra.run.dir='a b'"])
    assert representative_overrides(parsed[1:]) == [
        ["seed=0", "~trainer.compile", "hydra.run.dir='a b'"], ["seed=1", "~trainer.compile", "hydra.run.dir='a b'"],
        ["seed=2", "~trainer.compile", "hydra.run.dir='a b'"]]
    with pytest.raises(ConfigError, match="add hydra/sweeper=optuna"):
        representative_overrides(parsed)
    assert optuna_direction(parse(["hydra/sweeper=optuna"])) == ["hydra.sweeper.direction=maximize"]
    assert optuna_direction(parse(["hydra/sweeper=optuna", "hydra.sweeper.direction=minimize"])) == []
    assert optuna_direction(parse(["hydra/sweeper=basic"])) == []


def _trial(sweep: Path, number: int, overrides: list, top1: float) -> SimpleNamespace:
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    return SimpleNamespace(path=job, report={"linear_probe": {"top1": top1}}, config={})


def test_a_searchs_trials_are_read_through_the_parser(tmp_path: Path):
    (tmp_path / "optimization_results.yaml").write_text(yaml.safe_dump({"best_params": {"objective.mu": 2.0}}))
    first = ["hydra/sweeper=optuna", "+objective.mu=1.0", "hydra.sweeper.n_trials=2", "seed=0"]
    runs = [_trial(tmp_path, 0, first, 10.0), _trial(tmp_path, 1, ["objective.mu=2.0", "seed=0"], 20.0)]
    search = read_search(tmp_path, runs)
    assert [t.overrides for t in search.trials] == [["+objective.mu=1.0", "seed=0"], ["objective.mu=2.0", "seed=0"]]
    (tmp_path / "1" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=$(x)"]))
    with pytest.raises(ReportError, match=r"overrides.yaml: cannot read the override 'seed=\$\(x\)'"):
        read_search(tmp_path, runs)


def test_flags_among_the_overrides_are_moved_before_them_as_hydra_needs():
    assert in_hydra_order(["a=1", "--multirun", "b=2,3"]) == ["--multirun", "a=1", "b=2,3"]
    assert in_hydra_order(["a=1", "--cfg", "job", "~c"]) == ["--cfg", "job", "a=1", "~c"]
    assert in_hydra_order(["a=1", "--no-such-flag"]) == ["a=1", "--no-such-flag"]   # Hydra says why


@pytest.mark.parametrize("value", ["/runs/a-1.2", "/runs/with space", "/runs/it's", "/runs/a\\b", "/runs/x$y"])
def test_an_assignment_reads_back_as_the_value_given(value):
    [override] = parse([assignment("hydra.run.dir", value)])
    assert (override.key_or_group, override.value()) == ("hydra.run.dir", value)


def test_a_multirun_s_keys_under_a_swept_group_become_sweeps_of_their_one_value():
    from specrep_cli.overrides import group_keys_swept
    args = ["-m", "objective=clip,siglip", "objective.text.width=32", "seed=1", "objective.text.layers=1,2"]
    assert group_keys_swept(args) == ["-m", "objective=clip,siglip", "objective.text.width=choice(32)", "seed=1",
                                      "objective.text.layers=1,2"]   # a sweep already, and keys of no swept group
    alone = ["objective=clip", "objective.text.width=32"]   # no --multirun: as they are
    assert group_keys_swept(alone) == alone
    assert group_keys_swept(["-m", "objective=clip,siglip", "~objective.text.width"])[-1] == "~objective.text.width"


def test_a_shard_pattern_the_shell_expanded_is_named():
    from specrep_cli.overrides import expanded_braces
    assert "dataset.shards is given 3 times: the shell expanded a brace pattern" in expanded_braces(
        parse(["dataset=webdataset", "dataset.shards=a-0.tar", "dataset.shards=a-1.tar", "dataset.shards=a-2.tar"]))
    assert expanded_braces(parse(["dataset.shards=a.tar", "seed=1", "seed=2"])) is None
    later = ["dataset.shards=a.tar", "seed=1", "dataset.shards=b.tar"]   # an ordinary later override
    assert expanded_braces(parse(later)) is None
