"""The submit configuration: layered YAML, validated, with the provenance of every value.

Layers, lowest first: the package defaults (``bps/defaults.yaml``) <
``site_configs/<compute_site>.yaml`` < the files the user's file includes < the user's
file < command-line options. Mappings merge key by key; lists and scalars replace. Each
leaf remembers the layer that set it, so ``bps prepare --show-config`` can say where a
value came from and a validation error can name the file to fix.

``include: [a.yaml, b.yaml]`` (or one name) in a file layers those files below it, in
that order (b over a), each with its own includes; names are relative to the including
file. So site paths shared by many tile files live in one file. ``${VAR}`` in a string
value of the user's file, an included file or the site file is replaced by the
environment variable when the configuration is loaded (at prepare: jobs never read the
submitter's environment); ``$${`` is a literal ``${``. An unset variable is an error
naming it, the key and the file. Only the variables the files name are kept, with their
values and the files naming them (`ResolvedConfig.variables`), and written into the
submit directory.

Why pydantic with ``extra="forbid"``: an unknown key is almost always a typo
(``retires: 5``) that would otherwise be silently ignored and cost a campaign;
the error suggests the closest known key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from .workflow import Resources, RetryPolicy, SiteConfig, safe_name

DEFAULTS_FILE = Path(str(files("bps").joinpath("defaults.yaml")))
#: The site configs shipped with bps (``compute_site: htcondor_shared`` names ``htcondor_shared.yaml``).
SHIPPED_SITE_DIR = Path(str(files("bps").joinpath("site_configs")))
DEFAULTS_SOURCE = "package defaults"
CLI_SOURCE = "command line"
#: keys whose values are file-system paths, resolved relative to the file that set them
PATH_KEYS = ("pipeline", "repo", "qgraph", "submit_dir")
#: keys whose values are lists of paths, resolved the same way
PATH_LIST_KEYS = ("right_sizing.runs",)


class ConfigError(ValueError):
    """The submit configuration is wrong; the message names the key, the file and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceSpec(_Strict):
    """Resources of one task label; ``None`` fields fall back to ``resources.default``."""

    memory_mb: int | None = Field(default=None, gt=0)
    cpus: int | None = Field(default=None, gt=0)
    disk_mb: int | None = Field(default=None, gt=0)
    walltime_s: int | None = Field(default=None, gt=0)


class ResourcesSection(_Strict):
    default: ResourceSpec = ResourceSpec(memory_mb=2048, cpus=1, disk_mb=2048)
    labels: dict[str, ResourceSpec] = {}


class RetrySection(_Strict):
    retries: int = Field(default=3, ge=0)
    memory_multiplier: float = Field(default=2.0, ge=1.0)
    memory_max_mb: int = Field(default=32768, gt=0)


class RightSizingSection(_Strict):
    """Memory requests from earlier runs' measured peaks (`bps.right_size`)."""

    runs: list[str] = []
    quantile: float = Field(default=0.95, gt=0.0, le=1.0)
    margin: float = Field(default=1.2, ge=1.0)
    min_samples: int = Field(default=3, ge=1)


class ClusterSpec(_Strict):
    """One clustering rule: quanta of ``labels`` (all labels when empty) grouped by ``units``."""

    name: str
    labels: list[str] = []
    units: list[str] = []
    max_size: int | None = Field(default=None, gt=0)


class ClusteringSection(_Strict):
    clusters: list[ClusterSpec] = []


class FinalSection(_Strict):
    memory_mb: int = Field(default=2048, gt=0)
    cpus: int = Field(default=1, gt=0)
    disk_mb: int = Field(default=2048, gt=0)
    retries: int = Field(default=2, ge=0)
    batch_size: int = Field(default=5000, gt=0)


class LocalSection(_Strict):
    jobs: int = Field(default=2, gt=0)


def _site_model() -> type[BaseModel]:
    """A strict pydantic model mirroring `bps.workflow.SiteConfig`, so the two never drift apart."""
    hints = typing.get_type_hints(SiteConfig)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(SiteConfig):
        if f.default is not dataclasses.MISSING:
            default = f.default
        else:
            default = f.default_factory()  # type: ignore[misc]
        fields[f.name] = (hints[f.name], default)
    return create_model("SiteSection", __config__=ConfigDict(extra="forbid"), **fields)


SiteSection = _site_model()


class SubmitConfig(_Strict):
    """The resolved submit configuration (see ``docs/bps.md`` for every key)."""

    pipeline: str | None = None
    subset: str | None = None
    repo: str | None = None
    input_collections: list[str] = []
    output_run: str | None = None
    where: str = ""
    skip_existing_in: list[str] = []
    skip_existing: bool = False
    qgraph: str | None = None
    wms: Literal["local", "htcondor", "pegasus", "parsl"] = "local"
    compute_site: str = "local"
    submit_dir: str = "submit/{output_run}/{timestamp}"
    site: SiteSection = SiteSection()  # type: ignore[valid-type]
    resources: ResourcesSection = ResourcesSection()
    right_sizing: RightSizingSection = RightSizingSection()
    retry: RetrySection = RetrySection()
    clustering: ClusteringSection = ClusteringSection()
    throttles: dict[str, Annotated[int, Field(gt=0)]] = {}
    final: FinalSection = FinalSection()
    local: LocalSection = LocalSection()


@dataclasses.dataclass
class ResolvedConfig:
    """A validated `SubmitConfig` plus where each value came from."""

    config: SubmitConfig
    sources: dict[str, str]
    #: environment variables the files named as ``${VAR}``: name -> (value, the files naming it)
    variables: dict[str, tuple[str, list[str]]] = dataclasses.field(default_factory=dict)

    @property
    def site(self) -> SiteConfig:
        """The `SiteConfig` the translators read."""
        return SiteConfig(**self.config.site.model_dump())

    def resources_for(self, label: str) -> Resources:
        """Resources of one task label: its own values over ``resources.default``."""
        default = self.config.resources.default
        own = self.config.resources.labels.get(label, ResourceSpec())
        values = {
            name: getattr(own, name) if getattr(own, name) is not None else getattr(default, name)
            for name in ResourceSpec.model_fields
        }
        base = Resources()
        return Resources(
            memory_mb=values["memory_mb"] or base.memory_mb,
            cpus=values["cpus"] or base.cpus,
            disk_mb=values["disk_mb"] or base.disk_mb,
            walltime_s=values["walltime_s"],
        )

    def retry_policy(self) -> RetryPolicy:
        """The retry policy of quantum jobs."""
        r = self.config.retry
        return RetryPolicy(
            retries=r.retries, memory_multiplier=r.memory_multiplier, memory_max_mb=r.memory_max_mb
        )

    def source_of(self, key: str) -> str:
        """The layer that set ``key`` (dotted), or of its closest ancestor that was set."""
        parts = key.split(".")
        while parts:
            found = self.sources.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return DEFAULTS_SOURCE

    def show(self) -> str:
        """Every resolved leaf value, one a line, with the layer that set it."""
        lines = []
        for key, value in _flatten(self.config.model_dump()):
            lines.append(
                f"{key}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}  # {self.source_of(key)}"
            )
        if self.variables:
            lines.append("# environment variables the files name, with the values used (${VAR}):")
            for name, (value, files) in sorted(self.variables.items()):
                lines.append(f"#   {name}={value}  (named in {', '.join(files)})")
        return "\n".join(lines)


# -- loading ------------------------------------------------------------------------------


def site_config_dirs() -> list[Path]:
    """Where ``<compute_site>.yaml`` is looked for: ``$BPS_SITE_CONFIG_PATH``, ./site_configs, the shipped ones.

    The shipped sites are package data of `bps` (``bps/site_configs/``), found through
    `importlib.resources` wherever the package is installed.
    """
    dirs = [Path(p) for p in os.environ.get("BPS_SITE_CONFIG_PATH", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "site_configs")
    dirs.append(SHIPPED_SITE_DIR)
    return list(dict.fromkeys(d.resolve() for d in dirs))


def find_site_file(name: str) -> Path:
    """The file of site ``name``; the error lists the sites that exist."""
    dirs = site_config_dirs()
    for d in dirs:
        candidate = d / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"compute_site {name!r}: no file {name}.yaml in {', '.join(str(d) for d in dirs)}.{hint} "
        f"Known sites: {known}. Set BPS_SITE_CONFIG_PATH to add a directory."
    )


def read_yaml_layer(path: Path) -> dict[str, Any]:
    """Read one YAML layer; the error names the file and what is wrong with it."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def parse_cli_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` (value parsed as YAML) as given to ``--set``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set retry.retries=5")
    return key.strip(), yaml.safe_load(value) if value.strip() else None


def load_config(
    user_file: str | Path | None,
    cli: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> ResolvedConfig:
    """Resolve the layered submit configuration.

    Parameters
    ----------
    user_file
        The user's submit YAML (may be ``None`` when everything comes from the command line).
    cli
        Dotted key -> value from command-line options (``None`` values are ignored).
    now
        Time used for ``{timestamp}`` in ``submit_dir`` (tests pin it).

    Raises
    ------
    ConfigError
        For unknown keys (with the closest known key), wrong types (with key, file and
        expected type), missing files and sites.
    """
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    variables: dict[str, tuple[str, list[str]]] = {}
    _merge(merged, sources, read_yaml_layer(DEFAULTS_FILE), DEFAULTS_SOURCE, None)
    #: (layer, source, base directory) of the user's file and what it includes, lowest first
    user_layers: list[tuple[dict[str, Any], str, Path]] = []
    if user_file is not None:
        user_layers = _read_with_includes(Path(user_file).resolve(), variables, ())
    cli_tree: dict[str, Any] = {}
    for key, value in (cli or {}).items():
        if value is not None:
            _set_dotted(cli_tree, key, value)
    cli_tree = _site_shorthand(cli_tree, CLI_SOURCE)
    site_name = cli_tree.get("compute_site")
    for layer, _, _ in reversed(user_layers):
        site_name = site_name or layer.get("compute_site")
    site_name = site_name or merged["compute_site"]
    if not isinstance(site_name, str):
        raise ConfigError(f"compute_site must be a site name (a string), got {site_name!r}")
    site_file = find_site_file(site_name)
    site_layer = _expand_variables(read_yaml_layer(site_file), str(site_file), variables)
    _merge(merged, sources, site_layer, str(site_file), site_file.parent)
    for layer, source, base in user_layers:
        _merge(merged, sources, layer, source, base)
    _merge(merged, sources, cli_tree, CLI_SOURCE, Path.cwd())
    try:
        config = SubmitConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_explain(err, sources)) from None
    resolved = ResolvedConfig(config, sources, variables)
    config.submit_dir = _expand_submit_dir(config, now or datetime.now(UTC))
    _check_consistency(resolved)
    return resolved


def _read_with_includes(
    path: Path, variables: dict[str, tuple[str, list[str]]], chain: tuple[Path, ...]
) -> list[tuple[dict[str, Any], str, Path]]:
    """``path`` and the files it includes, as (layer, source, base directory), lowest first.

    A file included by another is named ``FILE (included by PARENT)`` as the source of
    its values, so ``--show-config`` says where each value came from.
    """
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(path) :], path))
        raise ConfigError(f"include cycle: {cycle}; a file must not include itself")
    source = str(path) if not chain else f"{path} (included by {chain[-1]})"
    data = _expand_variables(read_yaml_layer(path), str(path), variables)
    includes = data.pop("include", None)
    if includes is None:
        includes = []
    elif isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) and i for i in includes):
        raise ConfigError(
            f"include in {path}: expected a file name or a list of file names, got {includes!r}"
        )
    layers: list[tuple[dict[str, Any], str, Path]] = []
    for name in includes:
        target = Path(_resolve_path(name, path.parent)).resolve()
        if not target.is_file():
            raise ConfigError(f"include {name!r} in {path}: no file {target}")
        layers.extend(_read_with_includes(target, variables, (*chain, path)))
    layers.append((_site_shorthand(data, path), source, path.parent))
    return layers


_VARIABLE = re.compile(r"\$(\$?)\{([^}]*)\}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _expand_variables(
    data: dict[str, Any], source: str, variables: dict[str, tuple[str, list[str]]]
) -> dict[str, Any]:
    """``data`` with ``${VAR}`` in string values replaced from the environment (``$${`` stays ``${``).

    Every variable used is added to ``variables`` with its value and ``source``.
    """

    def expand(value: Any, key: str) -> Any:
        if isinstance(value, Mapping):
            return {k: expand(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str) or "${" not in value:
            return value

        def one(match: re.Match[str]) -> str:
            if match.group(1):
                return "${" + match.group(2) + "}"
            name = match.group(2)
            if not _VARIABLE_NAME.fullmatch(name):
                raise ConfigError(
                    f"{key} in {source}: ${{{name}}} is not an environment variable name "
                    "(letters, digits and '_'); write $${ for a literal ${"
                )
            if name not in os.environ:
                raise ConfigError(
                    f"{key} in {source}: environment variable {name} (written ${{{name}}}) is not set; "
                    "set it before bps prepare, or write the value"
                )
            value = os.environ[name]
            files = variables.setdefault(name, (value, []))[1]
            if source not in files:
                files.append(source)
            return value

        return _VARIABLE.sub(one, value)

    return expand(data, "")


def _site_shorthand(layer: dict[str, Any], source: Any) -> dict[str, Any]:
    """``site: NAME`` (a string) is short for ``compute_site: NAME``; ``site:`` as a mapping overrides fields."""
    site = layer.get("site")
    if isinstance(site, str):
        if "compute_site" in layer and layer["compute_site"] != site:
            raise ConfigError(
                f"{source}: site {site!r} and compute_site {layer['compute_site']!r} disagree; keep only compute_site"
            )
        layer = {k: v for k, v in layer.items() if k != "site"}
        layer["compute_site"] = site
    return layer


def _merge(
    target: dict[str, Any], sources: dict[str, str], layer: Mapping[str, Any], source: str, base: Path | None
) -> None:
    def walk(dst: dict[str, Any], src: Mapping[str, Any], prefix: str) -> None:
        for key, value in src.items():
            key = str(key)
            dotted = f"{prefix}{key}"
            if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
                walk(dst[key], value, dotted + ".")
            else:
                if base is not None and dotted in PATH_KEYS and isinstance(value, str):
                    value = _resolve_path(value, base)
                if base is not None and dotted in PATH_LIST_KEYS and isinstance(value, list):
                    value = [_resolve_path(v, base) if isinstance(v, str) else v for v in value]
                dst[key] = _plain(value)
                for old in [k for k in sources if k.startswith(dotted + ".")]:
                    del sources[old]
                sources[dotted] = source
                if isinstance(value, Mapping):
                    for sub, _ in _flatten(value, dotted + "."):
                        sources[sub] = source

    walk(target, layer, "")


def _resolve_path(value: str, base: Path) -> str:
    """Relative paths are relative to the directory of the file that set them (cwd on the command line)."""
    if "://" in value or os.path.isabs(value):
        return value
    return os.path.normpath(base / value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"command-line option {key}: {part!r} is not a section")
    node[parts[-1]] = value


def _flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(_flatten(value, dotted + "."))
        else:
            out.append((dotted, value))
    return out


def _explain(err: ValidationError, sources: dict[str, str]) -> str:
    lookup = ResolvedConfig(SubmitConfig.model_construct(), sources)
    messages = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc)
        source = lookup.source_of(key)
        if e["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.5)
            hint = (
                f"did you mean {'.'.join(loc[:-1] + [close[0]])!r}?" if close else f"known keys here: {known}"
            )
            messages.append(f"unknown key {key!r} in {source}: {hint}")
        else:
            expected = _expected_type(loc)
            got = e.get("input")
            messages.append(
                f"{key} in {source}: {e['msg']} (got {got!r}"
                + (f"; expected {expected})" if expected else ")")
            )
    return "invalid submit configuration:\n  " + "\n  ".join(messages)


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X``, ``X | None``, ``list[X]``, ``dict[str, X]``)."""
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return annotation if issubclass(annotation, BaseModel) else None
    for arg in typing.get_args(annotation):
        inner = _inner_model(arg)
        if inner is not None:
            return inner
    return None


def _known_keys(loc: list[str]) -> list[str]:
    # skip dict keys and list indices: keep only the path through model fields
    model: Any = SubmitConfig
    for part in loc:
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if part in fields:
            model = _inner_model(fields[part].annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(model.model_fields)
    return []


def _expected_type(loc: list[str]) -> str | None:
    model: Any = SubmitConfig
    annotation: Any = None
    for part in loc:
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        if part in fields:
            annotation = fields[part].annotation
            model = _inner_model(annotation)
    if annotation is None:
        return None
    if typing.get_origin(annotation) is None and isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _expand_submit_dir(config: SubmitConfig, now: datetime) -> str:
    try:
        return config.submit_dir.format(
            output_run=safe_name(config.output_run or "run"),
            timestamp=now.strftime("%Y%m%dT%H%M%SZ"),
        )
    except (KeyError, IndexError) as err:
        raise ConfigError(
            f"submit_dir {config.submit_dir!r}: unknown placeholder {err}; use {{output_run}} and {{timestamp}}"
        ) from None


def _check_consistency(resolved: ResolvedConfig) -> None:
    """Checks across keys: what prepare needs, and resources the site can satisfy."""
    c = resolved.config
    site = c.site
    problems = []
    if c.qgraph is None and c.pipeline is None:
        problems.append("set either qgraph (an existing .qgraph) or pipeline (to plan one)")
    if c.qgraph is not None and (c.subset or (c.pipeline and "#" in c.pipeline)):
        problems.append(
            f"subset ({resolved.source_of('subset' if c.subset else 'pipeline')}) selects part of a pipeline "
            "to plan, but qgraph is a graph planned already: plan the subset into the graph, or drop one"
        )
    if c.repo is None:
        problems.append("repo is not set: give the data repository root")
    if c.qgraph is None and not c.output_run:
        problems.append("output_run is not set: name the RUN collection that receives the outputs")
    if c.qgraph is not None and (c.skip_existing_in or c.skip_existing):
        key = "skip_existing_in" if c.skip_existing_in else "skip_existing"
        problems.append(
            f"{key} ({resolved.source_of(key)}) leaves out quanta when planning, but qgraph is a graph "
            "planned already: plan it with supertask qgraph --skip-existing-in, or drop qgraph"
        )
    limits = {"memory_mb": "max_memory_mb", "cpus": "max_cpus", "disk_mb": "max_disk_mb"}
    specs: dict[str, Any] = {"resources.default": c.resources.default, "final": c.final}
    specs.update({f"resources.labels.{label}": spec for label, spec in c.resources.labels.items()})
    for prefix, spec in specs.items():
        for field_name, limit_name in limits.items():
            value = getattr(spec, field_name)
            limit = getattr(site, limit_name)
            if value is not None and value > limit:
                key = f"{prefix}.{field_name}"
                problems.append(
                    f"{key} = {value} ({resolved.source_of(key)}) exceeds what site {site.name!r} offers "
                    f"(site.{limit_name} = {limit}): such a job would wait forever; lower it"
                )
    if problems:
        raise ConfigError("invalid submit configuration:\n  " + "\n  ".join(problems))
