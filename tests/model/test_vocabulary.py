"""The phase and stage registry: names round-trip, unknown names fail clearly, every phase has its scheme and its
local stage."""

import pytest

from model.scheme import load_scheme
from model.vocabulary import (
    GLOBAL_STAGE,
    IMPLANT_STAGE,
    PHASE_NAMES,
    PHASES,
    POSTOP,
    PREOP,
    REQUIRED_STAGES,
    STAGE_NAMES,
    STAGES,
    local_stage,
    phase,
    stage,
)


def test_the_stored_spellings_do_not_change():
    assert PHASE_NAMES == (PREOP, POSTOP) == ("preop", "postop")
    assert STAGE_NAMES == (GLOBAL_STAGE, "local_preop", "local_postop", IMPLANT_STAGE) == (
        "global", "local_preop", "local_postop", "implant")
    assert REQUIRED_STAGES == STAGE_NAMES[:3] and not STAGES[IMPLANT_STAGE].required
    assert STAGES[GLOBAL_STAGE].aux == ("right", "implant") and STAGES[IMPLANT_STAGE].aux == ("implant",)
    assert [PHASES[n].has_implants for n in PHASE_NAMES] == [False, True]
    assert PHASES[POSTOP].title == "Post-operative" and PHASES[PREOP].word == "pre-op"


def test_names_round_trip():
    for name in PHASE_NAMES:
        assert phase(name).name == name and phase(name) is PHASES[name]
    for name in STAGE_NAMES:
        assert stage(name).name == name and stage(name) is STAGES[name]
    assert stage(GLOBAL_STAGE).phase is None


@pytest.mark.parametrize(("lookup", "known"), [(phase, PHASE_NAMES), (stage, STAGE_NAMES), (local_stage, PHASE_NAMES)])
def test_unknown_names_raise_naming_the_known_ones(lookup, known):
    with pytest.raises(ValueError, match="intraop") as err:
        lookup("intraop")
    assert all(name in str(err.value) for name in known)


@pytest.mark.parametrize("name", PHASE_NAMES)
def test_every_phase_has_a_scheme_and_a_local_stage(name):
    assert load_scheme(name).phase == name
    local = local_stage(name)
    assert local in STAGES and STAGES[local].phase == name
    assert local != GLOBAL_STAGE
