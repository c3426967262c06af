"""Tests of supertask.config: fields, validation, overrides, freezing, saved form, digest."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supertask.config import (
    Config,
    ConfigField,
    ConfigOverrideError,
    ConfigurableField,
    DatasetField,
    DictField,
    Field,
    FieldValidationError,
    FrozenConfigError,
    ListField,
    UnknownFieldError,
)
from supertask.config.overrides import (
    apply_file,
    apply_python_file,
    apply_string,
    apply_yaml_text,
    parse_label_override,
)
from supertask.task import Struct, Task


class BackgroundConfig(Config):
    binSize = Field(dtype=int, default=128, doc="Background bin size (pixels).", min=1)


class DetectConfig(Config):
    threshold = Field(dtype=float, default=5.0, doc="Detection threshold (sigma).", min=0.0)
    method = Field(
        dtype=str, default="peak", doc="How to detect.", allowed={"peak": "local maxima", "psf": "PSF"}
    )
    enabled = Field(dtype=bool, default=True, doc="Whether to detect at all.")
    maxSources = Field(dtype=int, default=None, optional=True, doc="Cap on the number of sources.")
    radii = ListField(dtype=float, default=[1.0, 2.0], doc="Aperture radii.", minLength=1)
    gains = DictField(keytype=str, itemtype=float, default={"a": 1.0}, doc="Gain per amplifier.")
    background = ConfigField(dtype=BackgroundConfig, doc="Background estimation.")


class DetectTask(Task):
    ConfigClass = DetectConfig
    _DefaultName = "detect"

    def run(self, image, mask=None):
        return Struct(sources=[image])


class OtherDetectTask(DetectTask):
    def run(self, image, mask=None):
        return Struct(sources=[])


class WrongSignatureTask(DetectTask):
    def run(self, exposure):
        return Struct(sources=[])


class CalibrateConfig(Config):
    detection = ConfigurableField(doc="Source detection.", target=DetectTask)
    calexp = DatasetField(
        doc="Calibrated exposure.",
        units=("instrument", "visit", "detector"),
        storageClass="Exposure",
        name="calexp",
        role="output",
    )


def test_defaults_and_typed_assignment():
    config = DetectConfig()
    assert config.threshold == 5.0
    config.threshold = 3  # an int is a valid float
    assert config.threshold == 3.0 and isinstance(config.threshold, float)
    assert config.radii == (1.0, 2.0)
    assert config.background.binSize == 128


@pytest.mark.parametrize(
    "name,value,expected",
    [
        ("threshold", "high", "float"),
        ("enabled", 1, "bool"),
        ("binSize", 0, None),
    ],
)
def test_type_error_names_field_value_and_type(name, value, expected):
    config = DetectConfig()
    target = config.background if name == "binSize" else config
    with pytest.raises(FieldValidationError) as info:
        setattr(target, name, value)
    message = str(info.value)
    assert repr(name if name != "binSize" else "background.binSize") in message
    assert repr(value) in message
    if expected:
        assert expected in message


def test_range_and_choices_are_enforced():
    config = DetectConfig()
    with pytest.raises(FieldValidationError, match="it must be >= 0"):
        config.threshold = -1.0
    with pytest.raises(FieldValidationError, match="choose one of 'peak' \\(local maxima\\), 'psf'"):
        config.method = "blob"
    config.method = "psf"
    assert config.method == "psf"


def test_none_only_for_optional_fields():
    config = DetectConfig()
    config.maxSources = None
    with pytest.raises(FieldValidationError, match="required"):
        config.threshold = None


def test_list_field_validates_items_and_length():
    config = DetectConfig()
    config.radii = [3, 4.5]
    assert config.radii == (3.0, 4.5)
    with pytest.raises(FieldValidationError, match="radii"):
        config.radii = ["x"]
    with pytest.raises(FieldValidationError, match="radii"):
        config.radii = []
    with pytest.raises(FieldValidationError, match="give a list"):
        config.radii = "1.0"
    with pytest.raises(AttributeError):
        config.radii.append(3.0)  # values are tuples: changes must go through assignment


def test_dict_field_validates_keys_and_values_and_is_read_only():
    config = DetectConfig()
    config.gains = {"b": 2}
    assert dict(config.gains) == {"b": 2.0}
    with pytest.raises(FieldValidationError, match="gains"):
        config.gains = {"b": "two"}
    with pytest.raises(TypeError):
        config.gains["c"] = 1.0


def test_unknown_field_suggests_closest_and_lists_fields():
    config = DetectConfig()
    with pytest.raises(UnknownFieldError) as info:
        config.treshold = 4.0
    message = str(info.value)
    assert "Did you mean 'threshold'?" in message
    assert "radii" in message and "background" in message
    with pytest.raises(AttributeError, match="Did you mean 'threshold'"):
        _ = config.threshhold


def test_nested_config_error_names_full_path():
    config = CalibrateConfig()
    with pytest.raises(FieldValidationError, match="'detection.background.binSize'"):
        config.detection.background.binSize = "big"


def test_freeze_blocks_every_assignment_including_nested():
    config = CalibrateConfig()
    config.freeze()
    with pytest.raises(FrozenConfigError, match="frozen"):
        config.detection.threshold = 1.0
    with pytest.raises(FrozenConfigError):
        config.detection.background.binSize = 4
    with pytest.raises(FrozenConfigError):
        config.calexp.name = "other"
    with pytest.raises(FrozenConfigError):
        config.detection.retarget(OtherDetectTask)
    with pytest.raises(FrozenConfigError):
        apply_string(config, "detection.threshold=2")


def test_task_construction_freezes_config():
    task = DetectTask()
    with pytest.raises(FrozenConfigError):
        task.config.threshold = 1.0


def test_retarget_checks_run_signature():
    config = CalibrateConfig()
    config.detection.retarget(OtherDetectTask)
    assert config.detection.target is OtherDetectTask
    with pytest.raises(FieldValidationError, match="run signatures differ") as info:
        config.detection.retarget(WrongSignatureTask)
    assert "(self, exposure)" in str(info.value) and "(self, image, mask=None)" in str(info.value)
    assert config.detection.target is OtherDetectTask  # unchanged after the failed retarget


def test_dataset_field_name_configurable_units_fixed():
    config = CalibrateConfig()
    assert config.calexp.units == ("detector", "instrument", "visit")
    config.calexp.name = "calexp_v2"
    config.calexp.storageClass = "NumpyArray"
    datasetType = config.calexp.datasetType
    assert (datasetType.name, datasetType.storageClass) == ("calexp_v2", "NumpyArray")
    assert datasetType.units == ("detector", "instrument", "visit")
    with pytest.raises(FieldValidationError, match="units are fixed by the task class"):
        config.calexp = {"units": ("instrument", "visit")}
    with pytest.raises(UnknownFieldError):
        config.calexp.units = ("visit",)


def test_saved_form_round_trips_exactly(tmp_path):
    config = CalibrateConfig()
    config.detection.retarget(OtherDetectTask)
    config.detection.threshold = 0.1 + 0.2  # not exactly representable in decimal
    config.detection.radii = [1.5]
    config.detection.gains = {"x": 2.0}
    config.calexp.name = "calexp_v2"
    path = tmp_path / "calibrate.yaml"
    config.save(path)
    loaded = CalibrateConfig.load(path)
    assert loaded == config
    assert loaded.detection.target is OtherDetectTask
    assert loaded.detection.threshold == 0.1 + 0.2
    assert loaded.toDict() == config.toDict()
    assert CalibrateConfig() != config


def test_pickle_round_trips_and_keeps_frozen_state():
    config = CalibrateConfig()
    config.detection.threshold = 2.5
    config.freeze()
    restored = pickle.loads(pickle.dumps(config))
    assert restored == config and restored.frozen
    with pytest.raises(FrozenConfigError):
        restored.detection.threshold = 1.0


def test_digest_is_stable_across_processes_and_sensitive_to_values():
    config = CalibrateConfig()
    code = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, {tests!r})
        from test_config import CalibrateConfig
        print(CalibrateConfig().digest())
        """
    ).format(tests=str(__import__("pathlib").Path(__file__).parent))
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    ).stdout.strip()
    assert other == config.digest()
    config.detection.threshold = 4.0
    assert config.digest() != other


def test_python_override_file(tmp_path):
    path = tmp_path / "detect.py"
    path.write_text("config.threshold = 4.5\nconfig.background.binSize = 64\n")
    config = DetectConfig()
    apply_python_file(config, path)
    assert (config.threshold, config.background.binSize) == (4.5, 64)


def test_python_override_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("config.threshold = 4.5\n\nconfig.treshold = 3.0\n")
    with pytest.raises(ConfigOverrideError) as info:
        apply_python_file(DetectConfig(), path)
    assert f"{path}, line 3" in str(info.value)
    assert "Did you mean 'threshold'" in str(info.value)


def test_python_override_syntax_error_names_line(tmp_path):
    path = tmp_path / "syntax.py"
    path.write_text("config.threshold = 4.5\nconfig.threshold = = 3\n")
    with pytest.raises(ConfigOverrideError, match=r"syntax.py, line 2: syntax error"):
        apply_python_file(DetectConfig(), path)


def test_yaml_overrides_nested_and_dotted(tmp_path):
    config = CalibrateConfig()
    apply_yaml_text(config, "detection:\n  threshold: 3.0\ndetection.background.binSize: 32\n")
    assert config.detection.threshold == 3.0
    assert config.detection.background.binSize == 32
    path = tmp_path / "over.yaml"
    path.write_text("detection:\n  _target: test_config.OtherDetectTask\n  radii: [7]\n")
    sys.path.insert(0, str(tmp_path.parent))
    apply_file(config, path)
    assert config.detection.target is OtherDetectTask and config.detection.radii == (7.0,)


def test_yaml_override_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("detection:\n  threshold: [unclosed\n")
    with pytest.raises(ConfigOverrideError, match=r"bad.yaml, line \d+: malformed YAML"):
        apply_file(CalibrateConfig(), path)
    path.write_text("detection:\n  threshold: high\n")
    with pytest.raises(ConfigOverrideError, match=r"bad.yaml: .*'detection.threshold'"):
        apply_file(CalibrateConfig(), path)


def test_override_with_bad_yaml_value_is_atomic():
    config = CalibrateConfig()
    with pytest.raises(FieldValidationError):
        config.update({"detection": {"threshold": 1.0, "radii": "oops"}})
    assert config.detection.threshold == 5.0  # nothing half-applied


@pytest.mark.parametrize(
    "text,path,value",
    [
        ("detection.threshold=1e-3", ("detection", "threshold"), 1e-3),
        ("detection.enabled=false", ("detection", "enabled"), False),
        ("detection.radii=[1, 2.5]", ("detection", "radii"), (1.0, 2.5)),
        ("detection.gains={a: 2}", ("detection", "gains"), {"a": 2.0}),
        ("detection.maxSources=None", ("detection", "maxSources"), None),
        ("detection.method=psf", ("detection", "method"), "psf"),
        ("calexp.name=123", ("calexp", "name"), "123"),
        ("calexp=renamed", ("calexp", "name"), "renamed"),
    ],
)
def test_string_overrides_coerce_to_field_type(text, path, value):
    config = CalibrateConfig()
    apply_string(config, text)
    result = config
    for part in path:
        result = getattr(result, part)
    assert result == value


def test_string_override_errors_name_the_override():
    with pytest.raises(ConfigOverrideError, match="'detection.threshold=high'.*float"):
        apply_string(CalibrateConfig(), "detection.threshold=high")
    with pytest.raises(ConfigOverrideError, match="must look like"):
        apply_string(CalibrateConfig(), "detection.threshold")
    with pytest.raises(ConfigOverrideError, match="Did you mean 'threshold'"):
        apply_string(CalibrateConfig(), "detection.treshold=3")


def test_parse_label_override():
    assert parse_label_override("isr:detection.threshold=4") == ("isr", "detection.threshold=4")
    assert parse_label_override("isr:a=b:c=d") == ("isr", "a=b:c=d")
    with pytest.raises(ConfigOverrideError, match="label:field"):
        parse_label_override("detection.threshold=4")


def test_validate_reports_missing_required_value():
    class NeedsValue(Config):
        path = Field(dtype=str, doc="Where to read from.")

    config = NeedsValue()
    with pytest.raises(FieldValidationError, match="'path' .* no value"):
        config.validate()
    config.path = "/data"
    config.validate()


def test_field_needs_doc_and_known_dtype():
    with pytest.raises(TypeError, match="doc"):
        Field(dtype=int, default=1, doc="")
    with pytest.raises(TypeError, match="ListField"):
        Field(dtype=list, doc="a list")


def test_import_does_not_load_heavy_modules():
    code = "import sys, supertask.config, supertask.task; print(sorted(m for m in ('pydantic', 'sqlalchemy', 'numpy', 'rich', 'yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_config_field_accepts_instance_or_mapping_and_copies():
    config = DetectConfig()
    replacement = BackgroundConfig(binSize=16)
    config.background = replacement
    replacement.binSize = 8
    assert config.background.binSize == 16  # a copy was stored
    config.background = {"binSize": 4}
    assert config.background.binSize == 4
    with pytest.raises(FieldValidationError, match="not a BackgroundConfig"):
        config.background = DetectConfig()


def test_constructor_keyword_overrides_and_copy_independence():
    config = CalibrateConfig(**{"detection.threshold": 1.5})
    assert config.detection.threshold == 1.5
    clone = config.copy()
    clone.detection.threshold = 2.5
    assert config.detection.threshold == 1.5 and clone != config


def test_dataset_name_is_checked_on_assignment():
    config = CalibrateConfig()
    with pytest.raises(FieldValidationError, match="'calexp.name'.*invalid dataset type name"):
        config.calexp.name = "bad name"
    assert config.calexp.name == "calexp"


def test_dataset_config_pickles_with_its_units():
    value = pickle.loads(pickle.dumps(CalibrateConfig().calexp))
    assert value.datasetType.units == ("detector", "instrument", "visit") and value.role == "output"


_finite = st.floats(min_value=0.0, max_value=1e300, allow_nan=False)


@settings(max_examples=30, deadline=None)
@given(
    threshold=_finite,
    radii=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5),
    gains=st.dictionaries(st.text(max_size=5), st.floats(allow_nan=False), max_size=4),
    method=st.sampled_from(["peak", "psf"]),
    binSize=st.integers(min_value=1, max_value=2**40),
    name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
)
def test_saved_form_round_trip_property(threshold, radii, gains, method, binSize, name):
    config = CalibrateConfig()
    config.detection.threshold = threshold
    config.detection.radii = radii
    config.detection.gains = gains
    config.detection.method = method
    config.detection.background.binSize = binSize
    config.calexp.name = name
    loaded = CalibrateConfig.loadFromString(config.saveToString())
    assert loaded == config
    assert loaded.digest() == config.digest()


def test_import_class_reports_missing_dependency_of_existing_module(tmp_path, monkeypatch):
    from supertask.config import import_class

    (tmp_path / "needs_missing.py").write_text("import not_installed_anywhere\nclass T:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError, match="module 'needs_missing' needs 'not_installed_anywhere'"):
        import_class("needs_missing.T")
    with pytest.raises(ImportError, match="no such module"):
        import_class("surely_no_such_module.T")
    assert import_class("supertask.config.Config") is Config
    assert import_class("supertask.config:Config") is Config
