"""Who may issue what, decided without I/O: senders, hierarchy, references, roles."""
from __future__ import annotations

from dataclasses import replace

import pytest
from factories import COUNTY, GRIDS, SENDER, VILLAGE, alert

from warnd.config import ApprovalConfig, Config
from warnd.domain.authority import RIGHTS, Referenced, Right, Role, Scope, authorize, authorize_references, covers
from warnd.domain.errors import WarndError
from warnd.domain.model import Level

WEATHER = Scope("县气象局", ("暴雨",), (COUNTY,), Level.RED, senders=(SENDER,))
CENTRE = Scope("县预警中心", ("*",), (COUNTY,), Level.RED, Role.OPERATOR, ("centre@example.cn",), supersede=True)


def refused(fn, *args) -> str:  # noqa: ANN001
    with pytest.raises(WarndError) as err:
        fn(*args)
    assert err.value.status == 403
    return err.value.code


def test_a_token_issues_only_as_its_own_sender() -> None:
    authorize(WEATHER, alert(), Level.RED, [VILLAGE])
    assert refused(authorize, WEATHER, replace(alert(), sender="other@example.cn"), Level.RED,
                   [VILLAGE]) == "auth.sender_not_yours"
    unbound = replace(WEATHER, senders=())
    assert refused(authorize, unbound, alert(), Level.RED, [VILLAGE]) == "auth.sender_not_yours"


def test_grids_are_matched_by_the_hierarchy_not_by_prefix() -> None:
    one, other = GRIDS[0], GRIDS[0] + "1"  # "…0011" starts with "…001" but is the village's grid
    parents = {one: VILLAGE, other: VILLAGE}
    assert covers([one], one, parents)
    assert not covers([one], other, parents)
    assert covers([COUNTY], other, parents)  # the village's parents come from the code's shape
    assert not covers(["421127"], other, parents)
    grid_scope = replace(WEATHER, regions=(one,))
    assert refused(authorize, grid_scope, alert(), Level.RED, [other], parents) == "auth.region_out_of_scope"


def test_only_the_owner_changes_a_warning() -> None:
    own = [Referenced(1, "县气象局", (VILLAGE,))]
    foreign = [Referenced(2, "县水利局", (VILLAGE,))]
    assert authorize_references(WEATHER, alert(), own) is False
    assert refused(authorize_references, WEATHER, alert(), foreign) == "auth.not_your_warning"


def test_the_release_centre_supersedes_with_a_reason_inside_its_jurisdiction() -> None:
    foreign = [Referenced(2, "县水利局", (VILLAGE,))]
    assert refused(authorize_references, CENTRE, alert(), foreign) == "auth.reason_required"
    with_reason = replace(alert(), note="水利局值班电话确认：山洪已退，由中心代为解除")
    assert authorize_references(CENTRE, with_reason, foreign) is True
    elsewhere = [Referenced(3, "邻县水利局", ("421127100201",))]
    assert refused(authorize_references, CENTRE, with_reason, elsewhere) == "auth.region_out_of_scope"


def test_roles_have_the_rights_the_readme_lists() -> None:
    assert RIGHTS[Role.VIEWER] == {Right.READ_ALL}
    assert Right.CONTACTS not in RIGHTS[Role.APPROVER] and Right.APPROVE not in RIGHTS[Role.OPERATOR]
    assert not Scope("x", ("*",), ("*",), Level.RED, Role.VIEWER).can(Right.SUBMIT)
    viewer = Scope("x", ("*",), ("*",), Level.RED, Role.VIEWER, ("*",))
    assert refused(authorize, viewer, alert(), Level.RED, [VILLAGE]) == "auth.forbidden"


def test_approval_policy_defaults_and_green_channel() -> None:
    policy = Config().approval
    assert [policy.needed("县气象局", level, False) for level in Level] == [0, 0, 1, 2]
    assert policy.needed("县气象局", Level.RED, cancel=True) == 0
    custom = ApprovalConfig(green_channel=["县应急管理局"], departments={"县水利局": {"red": 1}}, cancel=1)
    assert custom.needed("县应急管理局", Level.RED, False) == 0
    assert custom.needed("县水利局", Level.RED, False) == 1
    assert custom.needed("县水利局", Level.RED, True) == 1
