"""`specrep export`: the README's loads into torchvision and timm run as written, strict, and the
loaded models' features equal specrep's encoder's; safetensors for any backbone; one-line refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli, train_into
from support import normalised_images, readme_load, specrep_features

from specrep_cli import cli, config
from specrep_cli.checkpoint import save_checkpoint
from specrep_cli.config import from_dict

# A ResNet-18 of the stock width, trained for one epoch on 64 images: seconds.
RESNET = ["encoder=resnet18", "dataset.num_train=64", "dataset.num_test=32", "trainer.batch_size=32",
          "trainer.epochs=1", "encoder.projector_hidden_dim=64", "encoder.projector_out_dim=32",
          "eval.probe.fast.steps=5", "eval.random_init=false", "eval.every_n_epochs=0", "eval.alignment_images=0",
          "eval.ritz=false"]


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory) -> Path:
    return train_into(tmp_path_factory.mktemp("resnet"), *RESNET)


def test_torchvision_export_loads_with_the_readme_lines_and_gives_the_same_features(resnet_run: Path):
    proc = run_cli("export", f"checkpoint={resnet_run}", "format=torchvision", cwd=resnet_run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    export = resnet_run / "export"
    meta = json.loads((export / "last_torchvision.json").read_text())
    assert meta["architecture"] == "torchvision.models.resnet18" and meta["changes"]["maxpool"] == "Identity()"
    assert (meta["in_channels"], meta["image_size"], meta["representation_dim"], meta["input"]) == (3, 32, 512, "rgb")
    ckpt = torch.load(resnet_run / "checkpoints" / "last.pt", weights_only=True)
    assert meta["mean"] == ckpt["data"]["mean"] and meta["std"] == ckpt["data"]["std"]
    assert meta["source_checkpoint"] == str((resnet_run / "checkpoints" / "last.pt").resolve())
    state = torch.load(export / "last_torchvision.pt", weights_only=True)
    assert not any(k.startswith(("projector", "backbone")) for k in state)   # the backbone alone, stock keys
    model = readme_load("torchvision", export)
    x = normalised_images(meta)
    with torch.no_grad():
        assert torch.allclose(model(x), specrep_features(resnet_run / "checkpoints" / "last.pt", x), atol=1e-5)


def test_timm_export_of_a_resnet_loads_with_the_readme_lines(resnet_run: Path):
    pytest.importorskip("timm", reason="format=timm needs the extra: pip install 'specrep[timm]'")
    assert cli.run_command("export", [f"checkpoint={resnet_run / 'checkpoints' / 'last.pt'}", "format=timm",
                               f"out={resnet_run / 'timm' / 'last_timm.pt'}"]) == 0   # in this process
    meta = json.loads((resnet_run / "timm" / "last_timm.json").read_text())
    model = readme_load("timm", resnet_run / "timm")
    x = normalised_images(meta)
    with torch.no_grad():
        assert torch.allclose(model(x), specrep_features(resnet_run / "checkpoints" / "last.pt", x), atol=1e-5)


def export_in_process(capsys, *args: str) -> tuple[int, str]:
    """`specrep export ARGS` in this process: (exit status, stderr)."""
    code = cli.run_command("export", list(args))
    return code, capsys.readouterr().err


def test_the_convnet_exports_as_safetensors_and_is_refused_for_torchvision(trained_run: Path, tmp_path: Path,
                                                                         capsys):
    pytest.importorskip("safetensors", reason="format=safetensors needs the extra: pip install 'specrep[safetensors]'")
    from safetensors.torch import load_file

    from specrep_cli.models.encoders import ConvNet
    code, err = export_in_process(capsys, f"checkpoint={trained_run}", "format=torchvision", f"out={tmp_path / 'x.pt'}")
    assert code == 1 and "encoder=convnet has no torchvision counterpart" in err and "format=safetensors" in err
    assert err.count("\n") == 1 and not (tmp_path / "x.pt").exists()
    out = tmp_path / "convnet.safetensors"
    code, err = export_in_process(capsys, f"checkpoint={trained_run}", "format=safetensors", f"out={out}")
    assert code == 0, err
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["encoder"]["name"] == "convnet" and meta["weights"] == "convnet.safetensors"
    model = ConvNet(meta["encoder"]["width"], meta["in_channels"])
    model.load_state_dict(load_file(out), strict=True)
    x = normalised_images(meta)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), specrep_features(trained_run / "checkpoints" / "last.pt", x), atol=1e-5)
    code, err = export_in_process(capsys, f"checkpoint={trained_run}", "format=safetensors", f"out={out}")
    assert code == 1 and "exists" in err   # nothing is overwritten


def test_a_lab_split_tower_exports_its_inner_backbone_and_says_what_it_sees(tmp_path: Path, capsys):
    pytest.importorskip("safetensors", reason="format=safetensors needs the extra: pip install 'specrep[safetensors]'")
    from safetensors.torch import load_file

    from specrep_cli.models.encoders import build_encoder
    enc = (from_dict(config.ImageEncoderConfig, {
        "name": "convnet", "width": 4, "projector_hidden_dim": 8, "projector_out_dim": 8, "projector_layers": 2}))
    encoder = build_encoder(enc, 3, "lab_l")   # phi of a Lab split: RGB in, L seen
    save_checkpoint(tmp_path / "checkpoints" / "last.pt", {   # what `specrep train objective=clip
        "specrep_version": "0.1.0",
        "config": {"encoder": config.to_dict(enc), "objective": {"name": "clip"},  # augmentation=lab_split` keeps
                   "augmentation": {"name": "lab_split"}, "dataset": {"name": "shapes"},
                   "trainer": {"batch_size": 64}},
        "data": {"in_channels": 3, "image_size": 16, "classes": ["a"], "input": "lab_l",
                 "mean": [0.0] * 3, "std": [1.0] * 3}, "encoder": encoder.state_dict(), "epoch": 1})
    code, err = export_in_process(capsys, f"checkpoint={tmp_path}", "format=safetensors")
    assert code == 0, err
    meta = json.loads((tmp_path / "export" / "last.json").read_text())
    assert (meta["input"], meta["in_channels"], meta["mean"], meta["std"]) == ("lab_l", 1, None, None)
    assert "L channel" in meta["input_description"]
    inner = load_file(tmp_path / "export" / "last.safetensors")
    assert inner.keys() == encoder.backbone.inner.state_dict().keys() and inner["features.0.0.weight"].shape[1] == 1


def test_export_never_writes_the_sidecar_over_the_weights_or_over_another_file(trained_run: Path, tmp_path: Path,
                                                                              capsys):
    pytest.importorskip("safetensors", reason="format=safetensors needs the extra: pip install 'specrep[safetensors]'")
    from specrep_cli.errors import ConfigError
    from specrep_cli.export import export_checkpoint
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes((trained_run / "checkpoints" / "last.pt").read_bytes())
    for out in ("w.json", "w.JSON"):   # the sidecar's own name: refused, nothing written
        code, err = export_in_process(capsys, f"checkpoint={ckpt}", "format=safetensors", f"out={tmp_path / out}")
        assert code == 1 and err.count("\n") == 1 and ".json" in err and not (tmp_path / out).exists()
    assert export_checkpoint(str(ckpt), "safetensors") == (tmp_path / "run" / "export" / "last.safetensors",
                                                           tmp_path / "run" / "export" / "last.json")
    assert export_checkpoint(str(ckpt), "safetensors", str(tmp_path / "export")) == (
        tmp_path / "export.safetensors", tmp_path / "export.json")   # no suffix: the format's
    (tmp_path / "dir").mkdir()
    assert (export_checkpoint(str(ckpt), "safetensors", str(tmp_path / "dir"))[0]
            == tmp_path / "dir" / "last.safetensors")
    (tmp_path / "notes.json").write_text("mine")   # not an export: kept, and the export refused
    with pytest.raises(ConfigError, match="notes.json exists"):
        export_checkpoint(str(ckpt), "safetensors", str(tmp_path / "notes.safetensors"))
    assert (tmp_path / "notes.json").read_text() == "mine" and not (tmp_path / "notes.safetensors").exists()


@pytest.mark.parametrize("args, needle", [
    (["checkpoint=nope"], "checkpoint nope does not exist"),
    (["formt=timm"], "Key 'formt' not in"),
    (["format=onnx"], "format must be one of torchvision, timm, safetensors"),
])
def test_bad_export_command_lines_are_one_line(tmp_path: Path, args, needle, capsys):
    code, err = export_in_process(capsys, *args)
    assert code == 1 and needle in err and err.count("\n") == 1 and "Traceback" not in err
