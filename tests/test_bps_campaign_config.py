"""A bad campaign file is refused in one line naming the key, the file and the fix, before any tile is planned."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bps.campaign_config import CampaignError, load_campaign, resolve_tiles
from bps.cli import main as bps_main

PIPELINE = Path(__file__).resolve().parents[1] / "examples" / "demo_pipeline.yaml"
SUBMIT = f"pipeline: {PIPELINE}\nrepo: repo\ninput_collections: [DemoCam/defaults]\n"
GOOD_TILES = 'tiles:\n  - {name: a, where: "tract = 0"}\n  - {name: b, where: "tract = 1"}\n'


def write(tmp_path: Path, text: str, submit: str = SUBMIT) -> Path:
    (tmp_path / "submit.yaml").write_text(submit)
    path = tmp_path / "campaign.yaml"
    path.write_text(text)
    return path


def test_a_good_file_is_read_with_paths_relative_to_it(tmp_path):
    campaign = load_campaign(write(tmp_path, f"output: u/me/drp\nsubmit: submit.yaml\n{GOOD_TILES}"))
    assert campaign.submit_file == tmp_path / "submit.yaml"
    assert campaign.campaign_dir == tmp_path / "campaign" / "u_me_drp"
    assert [t.name for t in campaign.spec.tiles] == ["a", "b"]
    assert campaign.spec.max_running == 1 and campaign.spec.share_units == ["visit"]


BAD = [
    ("output: x\nsubmit: submit.yaml\ntiles: [\n", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping with keys output, submit, tiles"),
    (
        f"output: x\nsubmit: submit.yaml\nmax_runing: 2\n{GOOD_TILES}",
        "unknown key 'max_runing'.*did you mean 'max_running'",
    ),
    (f"submit: submit.yaml\n{GOOD_TILES}", "output is missing.*CHAINED collection"),
    (f"output: x\n{GOOD_TILES}", "submit is missing.*submit YAML"),
    ("output: x\nsubmit: submit.yaml\n", "tiles is missing"),
    ("output: x\nsubmit: submit.yaml\ntiles: []\n", "tiles in .*the list is empty"),
    ("output: x\nsubmit: submit.yaml\ntiles: 3\n", "tiles in .*expected a list of \\{name, where\\}"),
    (f"output: x\nsubmit: submit.yaml\nmax_running: 0\n{GOOD_TILES}", "max_running in .*greater than 0"),
    (f"output: x\nsubmit: submit.yaml\nmax_running: two\n{GOOD_TILES}", "max_running in .*got 'two'"),
    (
        'output: x\nsubmit: submit.yaml\ntiles:\n  - {name: a/b, where: "tract = 0"}\n  - {name: a_b, where: "tract = 1"}\n',
        "tile names 'a/b' and 'a_b' name the same RUN",
    ),
    ("output: x\nsubmit: submit.yaml\ntiles:\n  - {name: a}\n", "where is missing.*expression"),
    (
        'output: x\nsubmit: submit.yaml\ntiles:\n  - {name: a, where: "tract = = 0"}\n',
        r"tiles\[a\].where in .*'tract = = 0' is not a valid expression",
    ),
    (
        f"output: x\nsubmit: submit.yaml\nwhere: \"band IN ('g'\"\n{GOOD_TILES}",
        "where in .*is not a valid expression",
    ),
    ("output: x\nsubmit: submit.yaml\ntiles: {unit: tract}\n", "give either values .* or where"),
    ("output: x\nsubmit: submit.yaml\ntiles: {unit: tract, values: [0], where: 'tract < 3'}\n", "not both"),
    ("output: x\nsubmit: submit.yaml\ntiles: {unit: tract, values: []}\n", "tiles.values in .*empty"),
    (f"output: x\nsubmit: nothere.yaml\n{GOOD_TILES}", "submit in .*no file .*nothere.yaml"),
]


@pytest.mark.parametrize(
    ("text", "message"), BAD, ids=[m.split(" ")[0][:20] + str(i) for i, (_, m) in enumerate(BAD)]
)
def test_a_bad_campaign_file_is_refused_with_the_fix(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(CampaignError, match=message):
        load_campaign(path)
    # and the command line says it in one line, without a traceback, before planning anything
    result = CliRunner().invoke(bps_main, ["campaign", str(path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.startswith("bps: error: ") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "campaign").exists()


def test_a_missing_campaign_file_is_named(tmp_path):
    with pytest.raises(CampaignError, match="campaign file .*nothere.yaml does not exist"):
        load_campaign(tmp_path / "nothere.yaml")


@pytest.mark.parametrize(
    "key", ["output_run: u/me/x", "where: tract = 0", "submit_dir: s", "skip_existing_in: [a]"]
)
def test_a_submit_file_setting_what_the_campaign_sets_per_tile_is_refused(tmp_path, key):
    path = write(tmp_path, f"output: x\nsubmit: submit.yaml\n{GOOD_TILES}", submit=SUBMIT + key + "\n")
    with pytest.raises(
        CampaignError, match=f"sets {key.split(':')[0]}: the campaign sets these for each tile"
    ):
        load_campaign(path)


def test_a_wrong_submit_file_is_refused_with_its_own_message(tmp_path):
    path = write(
        tmp_path, f"output: x\nsubmit: submit.yaml\n{GOOD_TILES}", submit=SUBMIT + "retry: {retires: 5}\n"
    )
    with pytest.raises(CampaignError, match=r"submit file .*unknown key 'retry.retires'") as err:
        load_campaign(path)
    assert "\n" not in str(err.value)


class FakeRegistry:
    """Units and one query: what resolve_tiles asks of a registry."""

    class universe:  # noqa: N801 - the attribute name of the real registry
        units = {"instrument": None, "visit": None, "tract": None, "patch": None, "skymap": None}

    def __init__(self, tracts: list[int]):
        self.tracts = tracts

    def queryDataIds(self, units, where=None):  # noqa: N802 - the registry's name
        return [{"tract": t} for t in self.tracts]


def test_tiles_by_unit_become_one_tile_per_value_with_the_shared_constraint(tmp_path):
    path = write(
        tmp_path,
        "output: u/me/drp\nsubmit: submit.yaml\nwhere: \"band = 'r'\"\ntiles: {unit: tract, where: 'tract < 5'}\n",
    )
    tiles = resolve_tiles(load_campaign(path), FakeRegistry([3, 1]))
    assert [(t.name, t.where, t.run) for t in tiles] == [
        ("tract1", "(tract = 1) AND (band = 'r')", "u/me/drp/tract1"),
        ("tract3", "(tract = 3) AND (band = 'r')", "u/me/drp/tract3"),
    ]


@pytest.mark.parametrize(
    ("tiles", "extra", "message"),
    [
        ("{unit: tract, where: 'tract > 99'}", "", "selects no tract; check the expression"),
        ("{unit: tracts, values: [1]}", "", "'tracts' is not a unit; did you mean 'tract'"),
        ("{unit: tract, values: [1]}", "share_units: [visits]\n", "share_units in .*'visits' is not a unit"),
    ],
)
def test_tiles_the_registry_cannot_resolve_are_refused(tmp_path, tiles, extra, message):
    path = write(tmp_path, f"output: x\nsubmit: submit.yaml\n{extra}tiles: {tiles}\n")
    with pytest.raises(CampaignError, match=message):
        resolve_tiles(load_campaign(path), FakeRegistry([]))


def test_report_of_a_directory_without_a_campaign_says_what_to_give(tmp_path):
    result = CliRunner().invoke(bps_main, ["campaign", "report", str(tmp_path)])
    assert result.exit_code == 1
    assert "holds no campaign" in result.output and "Traceback" not in result.output
