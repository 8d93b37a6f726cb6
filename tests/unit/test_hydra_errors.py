"""hydra_errors: Hydra's and OmegaConf's exceptions (real ones, from composing conf/ and parsing
overrides) read as one line."""
from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from specrep_cli import config
from specrep_cli.hydra_errors import one_line, parse_reason


def composition_error(*overrides: str) -> Exception:
    with pytest.raises(Exception) as caught:
        config.compose_config("train", list(overrides))
    return caught.value


def parse_error(override: str) -> HydraException:
    with pytest.raises(HydraException) as caught:
        OverridesParser.create().parse_overrides([override])
    return caught.value


def test_a_missing_option_lists_the_groups_options_without_the_primary_configs_name():
    err = composition_error("objective=spectrall")
    assert str(err).startswith("In 'train': ") and "Config search path" in str(err)   # what Hydra says
    line = one_line(err)
    assert line.startswith("Could not find 'objective/spectrall'; available: ") and "\n" not in line
    assert {"simclr", "spectral", "vicreg"} <= set(line.split("available: ")[1].split(", "))


def test_a_key_another_option_has_names_the_cause_and_the_schemas_keys():
    err = composition_error("objective.muu=1")
    assert one_line(err, config) == ("Could not override 'objective.muu': Key 'muu' not in 'SpectralConfig' "
                                     "(the keys it has: mu, nested)")
    assert one_line(err) == ("Could not override 'objective.muu': Key 'muu' not in 'SpectralConfig' "
                             "(to append to your config use +objective.muu=1)")   # no schemas: Hydra's hint


def test_a_wrong_type_names_the_cause():
    assert one_line(composition_error("trainer.epochs=abc")) == (
        "Error merging override trainer.epochs=abc: Value 'abc' of type 'str' could not be converted to Integer")


def test_hydras_hint_to_append_is_kept_and_the_primary_configs_name_dropped():
    err = HydraException("In 'eval': Could not override 'x'.\nTo append to your config use +x=1")
    assert one_line(err) == "Could not override 'x'. (to append to your config use +x=1)"
    assert one_line(HydraException("In 'objective/simclr': bad")) == "In 'objective/simclr': bad"   # a file: kept
    assert one_line(ValueError("")) == "ValueError"


@pytest.mark.parametrize("override, reason", [
    ("hydra.run.dir=out$(touch X)", "mismatched input '(' expecting <EOF>"),
    ("trainer.epochs=[1", "no viable alternative at input '[1'"),
    ("seed", "missing EQUAL at '<EOF>'"),
    ("a b=1", "no token of Hydra's override grammar starts with ' ' (character 2)"),
    ("a=x;y", "no token of Hydra's override grammar starts with ';' (character 4)"),
    ("objective.mu=interval(1.0,abc)",
     "TypeError while evaluating 'interval(1.0,abc)': mismatch type argument end: str is incompatible with "
     "Union[int, float]"),
])
def test_a_parse_error_is_the_grammars_reason_in_one_line(override, reason):
    err = parse_error(override)
    assert "See https://hydra.cc" in str(err)   # Hydra's text: several lines
    assert parse_reason(err) == reason
