"""A hostile or careless user, in process: values no run can use are one line naming the key before
any work (the preflight `specrep train` and `specrep eval` run), and the files a user can hand the
loaders are refused or read as the guarantees page (docs/guarantees.md) says."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image
from support import folder_cfg

from specrep_cli import cli, runtime
from specrep_cli.checkpoint import load_checkpoint
from specrep_cli.config import GraphConfig, from_dict
from specrep_cli.data.datasets import load_dataset
from specrep_cli.data.files import cache_root, cached_decode, list_image_folder
from specrep_cli.data.graphs import load_graph
from specrep_cli.errors import CheckpointError, ConfigError, DatasetError, ResourceError, as_specrep_error
from specrep_cli.export import export_paths
from specrep_cli.overrides import parse

SEED_RANGE = "must be in 0..4,294,967,295"
# (command, overrides, what the one line says); "held": refused before these checks were added too
PREFLIGHT = {
    # numbers: nan and inf pass `> 0` and `>= 0` checks; each wrecked the run (or a figure) after it started
    "lr inf": ("train", ["optim.lr=inf"], "optim.lr=inf is not a finite number"),
    "mu inf": ("train", ["objective.mu=inf"], "objective.mu=inf is not a finite number"),
    "weight decay inf": ("train", ["optim.weight_decay=inf"], "optim.weight_decay=inf is not a finite number"),
    "warm-up inf": ("train", ["optim.warmup_epochs=inf"], "optim.warmup_epochs=inf is not a finite number"),
    "knn temperature inf": ("train", ["eval.knn.temperature=inf"], "eval.knn.temperature=inf is not a finite"),
    "brightness inf": ("train", ["augmentation.view_a.brightness=inf"], "view_a.brightness=inf is not a finite"),
    "crop ratio inf": ("train", ["augmentation.view_b.crop_ratio=[1,inf]"], "view_b.crop_ratio[1]=inf"),
    "inf in a list": ("train", ["eval.probe.fast.weight_decays=[0,1e309]"], "eval.probe.fast.weight_decays[1]=inf"),
    "eval knn temperature inf": ("eval", ["eval.knn.temperature=inf"], "eval.knn.temperature=inf is not a finite"),
    # seeds every generator takes
    "seed too large": ("train", ["seed=99999999999999999999"], f"seed {SEED_RANGE}, got 99999999999999999999"),
    "negative seed": ("train", ["seed=-1"], f"seed {SEED_RANGE}, got -1"),
    "dataset seed too large": ("train", ["dataset.seed=4294967296"], f"dataset.seed {SEED_RANGE}"),
    "graph seed negative": ("train", ["dataset=graph", "encoder=embedding", "dataset.seed=-5"],
                            f"dataset.seed {SEED_RANGE}"),
    "eval seed negative": ("eval", ["seed=-3"], f"seed {SEED_RANGE}"),
    # optimizer settings torch refuses with a traceback, or takes and diverges with
    "negative momentum": ("train", ["optim.momentum=-5"], "optim.momentum must be in [0, 1), got -5.0"),
    "momentum 1": ("train", ["optim.momentum=1"], "optim.momentum must be in [0, 1), got 1.0"),
    "nesterov without momentum": ("train", ["optim.nesterov=true", "optim.momentum=0"],
                                  "optim.nesterov=true needs optim.momentum > 0"),
    "lars negative momentum": ("train", ["optim=lars", "optim.momentum=-1"], "optim.momentum must be in [0, 1)"),
    "adamw beta above 1": ("train", ["optim=adamw", "optim.betas=[2,0.999]"], "optim.betas must be two values"),
    "adamw one beta": ("train", ["optim=adamw", "optim.betas=[0.9]"], "optim.betas must be two values"),
    # threads: 100000 crashed the process (the OpenMP runtime cannot start them)
    "threads 100000": ("train", ["trainer.threads=100000"], "trainer.threads must be auto"),
    "eval threads 2000": ("eval", ["threads=2000"], "threads must be auto"),
    # empty values: `resume=$RUN` with RUN unset started a new run; an empty unlabelled_root crashed
    "empty resume": ("train", ["resume="], "resume is empty (resume=''; an unset shell variable?)"),
    "empty root": ("train", ["dataset=imagefolder", "dataset.root="], "dataset.root is empty"),
    "empty unlabelled root": ("train", ["dataset=imagefolder", "dataset.root=/data", "dataset.unlabelled_root="],
                              "dataset.unlabelled_root is empty"),
    "empty quoted cache dir": ("train", ["dataset=imagefolder", "dataset.root=/data", "dataset.cache_dir=''"],
                               "dataset.cache_dir is empty"),
    "empty checkpoint": ("eval", ["checkpoint="], "checkpoint is empty"),
    # --cfg job shows the config: its overrides are checked in one line, not Hydra's several
    "cfg job with a float epoch": ("train", ["--cfg", "job", "trainer.epochs=1.5"],
                                   "trainer.epochs=1.5: Value '1.5' of type 'float' could not be converted"),
    "cfg job with an inf lr": ("train", ["--cfg", "job", "optim.lr=inf"], "optim.lr=inf is not a finite number"),
    # held before: the schemas' ranges and types
    "held: negative mu": ("train", ["objective.mu=-1"], "objective.mu must be > 0"),
    "held: nan lr": ("train", ["optim.lr=nan"], "optim.lr must be > 0, got nan"),
    "held: k of 0": ("train", ["eval.knn.k=0"], "eval.knn.k must be > 0"),
    "held: no training images": ("train", ["dataset.num_train=0"], "dataset.num_train and num_test must be > 0"),
    "held: zero width": ("train", ["encoder.width=0"], "encoder.width must be > 0, got 0"),
    "held: probability above 1": ("train", ["augmentation.view_a.flip_p=1.5"], "flip_p must be a probability"),
    "held: null epochs": ("train", ["trainer.epochs=null"], "field 'trainer.epochs' is not Optional"),
    "held: null seed": ("train", ["seed=null"], "field 'seed' is not Optional"),
    "held: list for an int": ("train", ["encoder.width=[1,2]"], "could not be converted to Integer"),
    "held: scalar for a list": ("train", ["trainer.loggers=jsonl"], "str is not a ListConfig"),
    "held: fractional batch": ("train", ["trainer.batch_size=64.5"], "could not be converted to Integer"),
    "held: empty lr": ("train", ["optim.lr="], "Value '' of type 'str' could not be converted to Float"),
    "held: one-value crop scale": ("train", ["augmentation.view_a.crop_scale=[0.5]"], "crop_scale must be [min, max]"),
    "held: reversed crop scale": ("train", ["augmentation.view_a.crop_scale=[1,0.5]"], "crop_scale must be [min, max]"),
    "held: not a bool": ("train", ["trainer.keep_best=maybe"], "'maybe' is not a valid bool"),
    "held: tiny lr underflows": ("train", ["optim.lr=1e-400"], "optim.lr must be > 0, got 0.0"),
    "held: empty format": ("export", ["checkpoint=x.pt", "format="], "format must be one of"),
}


@pytest.mark.parametrize("case", sorted(PREFLIGHT))
def test_a_value_no_run_can_use_is_one_line_naming_it(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command, overrides, needle = PREFLIGHT[case]
    if command == "export":
        with pytest.raises(ConfigError) as err:
            cli.composed("export", overrides)
        problem = str(err.value)
    else:
        problem = cli.preflight(command, overrides)
    assert problem is not None and needle in problem and "\n" not in problem, problem
    assert not (tmp_path / "outputs").exists()


def test_specreps_own_folders_are_no_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = Path(cli.__file__).parent
    for key in (f"hydra.run.dir={own / 'conf'}", f"hydra.run.dir={own}/runs/${{now:%H}}"):
        assert "inside specrep's own files" in cli.preflight("train", [key])
    assert "inside specrep's own files" in cli.preflight("train", ["-m", "seed=0,1", f"hydra.sweep.dir={own}"])
    assert cli.preflight("train", [f"hydra.run.dir={tmp_path / 'run'}"]) is None


@pytest.mark.parametrize("override, needle", [
    ("hydra.run.dir=/tmp/a\nb", "'hydra.run.dir=/tmp/a\\nb'"),                 # a newline: shown as \n, one line
    ("dataset.root=/data/café", "goes in quotes (key='a b', key=\"it's\")"),   # non-ASCII: how to quote it
    ("hydra.run.dir=/tmp/my run's", "goes in quotes"),                        # a quote inside: how to quote it
    ("trainer.device=" + "x;" * 50_000, "... (100,015 characters)"),            # the override cut, not the line
    ("dataset.root=/data/a=b", "mismatched input '='"),                        # held: '=' in a value needs quotes
], ids=["newline", "non-ascii", "quote", "100k characters", "equals sign"])
def test_an_override_that_does_not_parse_is_shown_on_one_short_line(override, needle):
    with pytest.raises(ConfigError) as err:
        parse([override])
    assert needle in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 600, str(err.value)


def test_quoting_reads_a_value_with_spaces_and_non_ascii_letters():
    quoted, spaced, equals = parse(["dataset.root='/data/my café'", "hydra.run.dir=/tmp/my run", "a='x=y'"])
    assert (quoted.value(), spaced.value(), equals.value()) == ("/data/my café", "/tmp/my run", "x=y")


# ------------------------------------------------------------------------------------ checkpoints
def _written(path: Path, what: str) -> Path:
    if what == "fifo":
        os.mkfifo(path)
    elif what == "loop":
        os.symlink(path.with_name("other"), path)
        os.symlink(path, path.with_name("other"))
    elif what == "text":
        path.write_text("not a checkpoint\n")
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "list":
        torch.save([1, 2, 3], path)
    elif what == "tensor":
        torch.save(torch.ones(3), path)
    elif what == "checkpoints dir":
        path.mkdir(parents=True)
        (path / "last.pt").write_bytes(b"")
    return path


@pytest.mark.parametrize("what, needle", [
    ("fifo", "is not a regular file (a pipe, socket or device)"),   # was read forever
    ("loop", "does not exist"),
    ("text", "is not a readable checkpoint (UnpicklingError)"),
    ("empty", "is not a readable checkpoint (EOFError)"),
    ("list", "is not a specrep checkpoint"),
    ("tensor", "is not a specrep checkpoint"),
    ("checkpoints dir", "is a directory without checkpoints/last.pt"),
], ids=["fifo", "symlink loop", "text", "empty", "list", "tensor", "checkpoints dir"])
def test_a_file_that_is_no_checkpoint_is_one_line(tmp_path, what, needle):
    path = _written(tmp_path / "model.pt", what)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_an_unreadable_checkpoint_says_permission_not_corruption(tmp_path, monkeypatch):
    path = _written(tmp_path / "model.pt", "list")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(torch, "load", refused)   # root reads any file: the refusal a user gets, by hand
    with pytest.raises(CheckpointError, match=r"cannot read .*model.pt \(Permission denied\): give this user read"):
        load_checkpoint(path)


def test_export_refuses_a_device_and_a_file_in_the_way_and_never_writes_beside_them(tmp_path):
    checkpoint = _written(tmp_path / "run" / "checkpoints", "checkpoints dir") / "last.pt"
    with pytest.raises(ConfigError, match="out=/dev/null is a device, pipe or socket"):
        export_paths("/dev/null", checkpoint, "safetensors")   # was /dev/null.safetensors, in /dev
    (tmp_path / "notes").write_text("mine")
    with pytest.raises(ConfigError, match="notes is a file, not a folder"):   # was "(File exists)"
        export_paths(str(tmp_path / "notes" / "w"), checkpoint, "safetensors")
    assert (tmp_path / "notes").read_text() == "mine"
    assert export_paths(str(tmp_path / "new" / "dir" / "w"), checkpoint, "safetensors")[0] == \
        tmp_path / "new" / "dir" / "w.safetensors"   # folders that do not exist yet: made when written


# ----------------------------------------------------------------------------------- the machine
def test_cuda_asked_for_without_a_gpu_names_the_commands_own_key(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(Exception, match=r"^device=cuda but no CUDA device is visible: use device=auto"):
        runtime.resolve_compute("cuda", "auto")   # specrep eval's key (it said trainer.device)
    with pytest.raises(Exception, match=r"^trainer.device=cuda but"):
        runtime.resolve_device("cuda")


@pytest.mark.parametrize("err", [
    MemoryError("Unable to allocate 80.5 GiB for an array with shape (8, 60000, 60000, 3)"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"),
], ids=["numpy", "torch cpu", "torch cuda"])
def test_running_out_of_memory_is_one_line_saying_what_to_lower(err):
    line = str(as_specrep_error(err))
    assert isinstance(as_specrep_error(err), ResourceError) and line.startswith("out of memory (")
    assert "lower trainer.batch_size" in line and "\n" not in line


def test_any_other_error_keeps_its_traceback():
    err = RuntimeError("a bug")
    with pytest.raises(RuntimeError, match="a bug"):
        as_specrep_error(err)


# ------------------------------------------------------------------------------------------ data
def _class_folder(root: Path, classes, size=(8, 8)) -> Path:
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                Image.new("RGB", size, (40 * i, 90, 10)).save(root / split / c / f"{i}.png")
    return root


def test_one_class_is_a_warning_that_the_probe_says_nothing(tmp_path, caplog):
    data = load_dataset(folder_cfg(_class_folder(tmp_path / "d", ["cat"]), tmp_path / "cache"))
    assert data.classes == ["cat"]
    assert "has one class (cat): the probe's and kNN's top-1 are 100 %" in caplog.text


def test_1x1_images_are_scaled_up(tmp_path):
    data = load_dataset(folder_cfg(_class_folder(tmp_path / "d", ["a", "b"], size=(1, 1)), tmp_path / "cache"))
    assert tuple(data.train_images.shape) == (6, 3, 16, 16)


def test_a_pipe_a_dangling_link_and_a_link_loop_among_the_images_are_left_out(tmp_path):
    root = _class_folder(tmp_path / "d", ["a"])
    os.mkfifo(root / "train" / "a" / "pipe.png")   # reading it would wait forever
    (root / "train" / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "train" / "a" / "loop").symlink_to(root / "train")
    files, labels, classes = list_image_folder(root / "train")
    assert sorted(f.name for f in files) == ["0.png", "1.png", "2.png"] and classes == ["a"]


def test_a_file_as_the_image_root_is_named_as_a_file(tmp_path):
    (tmp_path / "d").write_text("not a folder")
    with pytest.raises(DatasetError, match="dataset.root=.*d is a file: point it at a folder"):
        load_dataset(folder_cfg(tmp_path / "d", tmp_path / "cache"))


def test_a_file_as_the_cache_is_a_warning_and_the_images_decode(tmp_path, caplog):
    root = _class_folder(tmp_path / "d", ["a"])
    (tmp_path / "cache").write_text("mine")
    images = cached_decode(sorted((root / "train" / "a").glob("*.png")), 8, tmp_path / "cache")
    assert images.shape == (3, 3, 8, 8) and (tmp_path / "cache").read_text() == "mine"
    assert "could not cache the decoded images" in caplog.text


def test_without_home_the_cache_still_has_a_place(monkeypatch):
    monkeypatch.delenv("SPECREP_CACHE", raising=False)
    monkeypatch.delenv("HOME", raising=False)
    assert cache_root(None).name == "specrep" and cache_root(None).is_absolute()


GRAPH_FILES = {
    "nan weight": ("a,b,1\nb,c,nan\n", "line 2: weight 'nan' is not finite"),
    "inf weight": ("a,b,1\nb,c,inf\n", "line 2: weight 'inf' is not finite"),
    "all weights zero": ("a,b,0\nb,c,0\n", "has no edge with a positive weight"),
    "binary": (bytes(range(256)) * 4, "is not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(GRAPH_FILES))
def test_a_graph_file_no_graph_can_come_from_is_one_line(tmp_path, case):
    content, needle = GRAPH_FILES[case]
    path = tmp_path / "edges.csv"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(DatasetError, match=needle):
        load_graph(from_dict(GraphConfig, {"source": "file", "path": str(path)}))


def test_a_folder_as_the_edge_list_is_named_as_no_file(tmp_path):
    with pytest.raises(DatasetError, match=f"edge list {tmp_path} is not a regular file"):   # it said: does not exist
        load_graph(from_dict(GraphConfig, {"source": "file", "path": str(tmp_path)}))


def test_a_node_name_with_a_comma_is_read_in_quotes(tmp_path):
    ring = [(f'"n,{i}"', f'"n,{(i + 1) % 8}"') for i in range(8)]
    (tmp_path / "edges.csv").write_text("".join(f"{a},{b}\n" for a, b in ring))
    graph = load_graph(from_dict(GraphConfig, {"source": "file", "path": str(tmp_path / "edges.csv"),
                                               "hops": 1})).graph
    assert graph.num_nodes == 8 and "n,0" in graph.names
