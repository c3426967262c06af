"""The Pegasus translator: schema-valid files, the generic workflow's jobs and edges, runnable jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bps.config import SHIPPED_SITE_DIR
from bps.wms.base import WmsError
from bps.wms.pegasus import schema
from bps.wms.pegasus.translator import (
    STAGING_ARGS,
    pegasus_id,
    plan_command,
    to_document,
    translate,
    write_plan,
)

try:
    from tests.support.pegasus_runner import build_sample, evaluate_directly, run_workflow, throwaway_key
except ImportError:  # tests/ is not a package: pytest put tests/ itself on sys.path
    from support.pegasus_runner import build_sample, evaluate_directly, run_workflow, throwaway_key

CONFIGS = {
    "local-sharedfs": ({"execution_site": "local"}, "shared"),
    "pool-sharedfs": (
        {
            "execution_site": "condorpool",
            "shared_scratch": "/scratch/pegasus",
            "pegasus_home": "/opt/pegasus",
        },
        "shared",
    ),
    "pool-condorio": ({"execution_site": "condorpool"}, "transfer"),
    "pool-nonsharedfs": (
        {
            "data_configuration": "nonsharedfs",
            "staging_url": "scp://stage.example.org",
            "staging_path": "/data/staging",
            "staging_user": "stager",
            "cluster_size": 4,
            "properties": {"pegasus.transfer.threads": 4},
        },
        "transfer",
    ),
}


def _written(tmp_path: Path, config: str = "local-sharedfs"):
    pegasus, staging = CONFIGS[config]
    if pegasus.get("data_configuration") == "nonsharedfs":
        pegasus = {**pegasus, "ssh_private_key": throwaway_key()}
    sample = build_sample(tmp_path, pegasus=pegasus, staging=staging)
    plan = translate(sample.workflow)
    out = Path(sample.workflow.submit_dir) / "pegasus"
    write_plan(plan, out)
    docs = {name: json.loads((out / name).read_text()) for name in schema.SCHEMA_OF}
    return sample, plan, out, docs


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_written_file_validates_against_pegasus_schemas(tmp_path, config):
    _, _, out, _ = _written(tmp_path, config)
    results = schema.validate_directory(out)
    assert set(results) == set(schema.SCHEMA_OF)
    assert results == {name: [] for name in schema.SCHEMA_OF}


def test_schema_check_rejects_an_id_with_a_dot(tmp_path):
    _, _, _, docs = _written(tmp_path)
    docs["compute.yml"]["jobs"][0]["id"] = "isr.visit-1"
    assert schema.validation_errors(docs["compute.yml"], "wf-5.0.yml")


def test_one_pegasus_job_per_generic_job_and_the_final_job_after_the_compute_sub_workflow(tmp_path):
    sample, plan, _, docs = _written(tmp_path)
    jobs = docs["compute.yml"]["jobs"]
    names = sorted(plan.job_map[job["id"]]["name"] for job in jobs)
    assert names == sorted(sample.workflow.jobs)
    for job in jobs:
        assert job["nodeLabel"] == plan.job_map[job["id"]]["label"]
    root = docs["workflow.yml"]
    sub, final = root["jobs"]
    assert sub["type"] == "pegasusWorkflow" and sub["file"] == "compute.yml" and sub["id"] == plan.compute_id
    assert plan.job_map[final["id"]]["name"] == "finalize"
    assert root["jobDependencies"] == [{"id": plan.compute_id, "children": [final["id"]]}]


def test_edges_equal_the_generic_workflows(tmp_path):
    sample, plan, _, docs = _written(tmp_path)
    names = {pid: entry["name"] for pid, entry in plan.job_map.items()}
    edges = sorted(
        (names[dep["id"]], names[child])
        for dep in docs["compute.yml"]["jobDependencies"]
        for child in dep["children"]
    )
    assert edges == sample.workflow.edges()


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_final_job_declares_no_files_has_no_retries_and_runs_on_the_submit_host(tmp_path, config):
    _, plan, out, docs = _written(tmp_path, config)
    final = next(job for job in docs["workflow.yml"]["jobs"] if job["id"] == plan.final_id)
    # a declared file makes Pegasus copy it into the job's sandbox; finalize reads staged/ itself
    assert final["uses"] == []
    assert final["profiles"]["dagman"] == {"RETRY": 0}
    assert final["profiles"]["selector"] == {"execution.site": "local"}
    sub = next(job for job in docs["workflow.yml"]["jobs"] if job["id"] == plan.compute_id)
    assert sub["profiles"]["dagman"] == {"RETRY": 0}
    args = sub["arguments"]
    assert args[args.index("--conf") + 1] == str(out / "pegasus.properties")
    assert args[args.index("--sites") + 1] == plan.settings.execution_site
    assert args[args.index("--output-sites") + 1] == "local"


def test_logical_file_names_are_unique_and_each_made_by_one_job(tmp_path):
    _, _, _, docs = _written(tmp_path)
    produced = [
        use["lfn"] for job in docs["compute.yml"]["jobs"] for use in job["uses"] if use["type"] == "output"
    ]
    # 7 datasets and one manifest per compute job (6 jobs)
    assert len(produced) == len(set(produced)) == 7 + 6
    assert sum(lfn.endswith(".manifest.json") for lfn in produced) == 6


def test_every_job_reads_the_graph_file_by_its_logical_name(tmp_path):
    sample, plan, _, docs = _written(tmp_path)
    assert plan.graph_lfn == "sample.qgraph"
    for job in docs["compute.yml"]["jobs"]:
        assert {"lfn": "sample.qgraph", "type": "input"} in job["uses"]
        assert sample.workflow.graph_file not in job["arguments"]
        assert job["arguments"][:2] == ["--graph", "sample.qgraph"]
        assert job["arguments"][-4:] == list(STAGING_ARGS)


def test_clustered_job_carries_all_its_quanta(tmp_path):
    _, plan, _, docs = _written(tmp_path)
    job = next(j for j in docs["compute.yml"]["jobs"] if plan.job_map[j["id"]]["name"] == "isr.visit-2")
    quanta = [job["arguments"][i + 1] for i, a in enumerate(job["arguments"]) if a == "--quantum"]
    assert quanta == ["3", "4"]


def test_resources_and_retries_become_profiles(tmp_path):
    sample, plan, _, docs = _written(tmp_path)
    by_name = {plan.job_map[j["id"]]["name"]: j for j in docs["compute.yml"]["jobs"]}
    for name, gjob in sample.workflow.jobs.items():
        profiles = by_name[name]["profiles"]
        res = gjob.resources
        assert profiles["pegasus"]["memory"] == res.memory_mb
        assert profiles["pegasus"]["cores"] == res.cpus
        assert profiles["pegasus"]["diskspace"] == res.disk_mb
        assert profiles["pegasus"].get("runtime") == res.walltime_s
        assert profiles["dagman"]["RETRY"] == gjob.retry.retries
    assert by_name["calib.visit-1"]["profiles"]["dagman"]["CATEGORY"] == "calib"
    assert by_name["coadd.tract-0.patch-1"]["profiles"]["dagman"]["PRIORITY"] == 5


def test_throttles_become_dagman_category_limits(tmp_path):
    _, _, out, _ = _written(tmp_path)
    assert "dagman.calib.maxjobs = 1" in (out / "pegasus.properties").read_text()


def test_replica_catalog_lists_each_overall_input_at_its_datastore_location(tmp_path):
    sample, _, _, docs = _written(tmp_path)
    replicas = {r["lfn"]: r["pfns"] for r in docs["replicas.yml"]["replicas"]}
    expected = {
        lfn: [{"site": "local", "pfn": f"file://{sample.repo / path}"}]
        for lfn, path in sample.input_paths.items()
    }
    expected["sample.qgraph"] = [{"site": "local", "pfn": f"file://{sample.workflow.graph_file}"}]
    # the compute sub-workflow, which Pegasus plans from the submit host
    pegasus_dir = Path(sample.workflow.submit_dir) / "pegasus"
    expected["compute.yml"] = [{"site": "local", "pfn": f"file://{pegasus_dir / 'compute.yml'}"}]
    assert replicas == expected


def test_transformation_catalog_installs_run_quantum_on_the_execution_site(tmp_path):
    sample, _, _, docs = _written(tmp_path, "pool-sharedfs")
    sites = {t["name"]: t["sites"] for t in docs["transformations.yml"]["transformations"]}
    assert sites["fake_run_quantum"] == [
        {"name": "condorpool", "pfn": str(tmp_path / "fake_run_quantum"), "type": "installed"}
    ]
    assert [s["name"] for s in sites["fake_finalize"]] == ["local"]


def test_sharedfs_site_has_the_configured_shared_scratch(tmp_path):
    _, plan, out, docs = _written(tmp_path, "pool-sharedfs")
    pool = next(s for s in docs["sites.yml"]["sites"] if s["name"] == "condorpool")
    assert pool["directories"][0]["path"] == "/scratch/pegasus"
    assert pool["directories"][0]["sharedFileSystem"] is True
    assert pool["profiles"]["pegasus"]["data.configuration"] == "sharedfs"
    assert "pegasus.data.configuration = sharedfs" in (out / "pegasus.properties").read_text()


def test_nonsharedfs_adds_a_staging_site_and_plans_with_it(tmp_path):
    _, plan, out, docs = _written(tmp_path, "pool-nonsharedfs")
    staging = next(s for s in docs["sites.yml"]["sites"] if s["name"] == "staging")
    assert staging["directories"][0]["fileServers"][0]["url"] == "scp://stager@stage.example.org/data/staging"
    assert staging["profiles"]["pegasus"]["ssh_private_key"] == plan.settings.ssh_private_key
    # the compute sub-workflow is planned with the staging site and clustering; workflow.yml runs locally
    sub = next(job for job in docs["workflow.yml"]["jobs"] if job["id"] == plan.compute_id)
    args = sub["arguments"]
    assert args[args.index("--staging-site") + 1] == "condorpool=staging"
    assert args[args.index("--cluster") + 1] == "horizontal"
    cmd = plan_command(plan, out)
    assert cmd[cmd.index("--sites") + 1] == "local" and "--staging-site" not in cmd
    run_quantum = next(
        t for t in docs["transformations.yml"]["transformations"] if t["name"] == "fake_run_quantum"
    )
    assert run_quantum["profiles"]["pegasus"]["clusters.size"] == 4
    properties = (out / "pegasus.properties").read_text()
    assert "pegasus.transfer.threads = 4" in properties
    assert "pegasus.data.configuration = nonsharedfs" in properties


def test_plan_script_runs_the_planner_from_the_pegasus_directory(tmp_path):
    _, plan, out, _ = _written(tmp_path)
    script = (out / "plan.sh").read_text()
    assert "pegasus-plan --conf pegasus.properties" in script
    assert script.rstrip().endswith("--submit workflow.yml")


@pytest.mark.parametrize(
    ("pegasus", "fragment"),
    [
        ({"sharde_scratch": "/x"}, "sharde_scratch"),
        ({"execution_site": "pool", "data_configuration": "sharedfs"}, "shared_scratch"),
        ({"data_configuration": "nonsharedfs"}, "staging_url"),
        ({"shared_scratch": "relative/dir"}, "absolute"),
    ],
)
def test_bad_pegasus_site_section_names_the_problem(tmp_path, pegasus, fragment):
    sample = build_sample(tmp_path, pegasus=pegasus)
    with pytest.raises(WmsError, match=fragment) as err:
        translate(sample.workflow)
    assert "test-site" in str(err.value)


def test_job_names_map_to_unique_valid_ids():
    assert pegasus_id("isr.visit-1.detector-2") == "isr_visit-1_detector-2"
    assert pegasus_id("123") == "j123"
    from bps.workflow import GenericWorkflow, Job, SiteConfig

    site = SiteConfig(pegasus={"execution_site": "local"})
    wf = GenericWorkflow("w", "/tmp/x", "/tmp/x/g.qgraph", "/tmp/repo", "run", site=site)
    wf.add_job(Job("a.b", "a", [1], []))
    wf.add_job(Job("a_b", "a", [2], []))
    plan = translate(wf)
    assert sorted(plan.job_map) == ["a_b", "a_b-2"]
    assert plan.compute_id not in plan.job_map
    assert {v["name"] for v in plan.job_map.values()} == {"a.b", "a_b"}


def test_translation_is_reproducible(tmp_path):
    _, _, _, first = _written(tmp_path / "a")
    _, _, _, second = _written(tmp_path / "b")
    for docs in (first, second):
        for doc in docs.values():
            doc.pop("x-pegasus")
    text = json.dumps(first["workflow.yml"]).replace(str(tmp_path / "a"), "ROOT")
    assert text == json.dumps(second["workflow.yml"]).replace(str(tmp_path / "b"), "ROOT")


def test_running_the_workflow_produces_the_same_datasets_as_a_direct_run(tmp_path):
    sample, plan, out, _ = _written(tmp_path)
    result = run_workflow(out, tmp_path / "work")
    expected = evaluate_directly(sample.graph, sample.repo, sample.input_paths)
    produced = {lfn: path.read_text() for lfn, path in result.outputs.items() if lfn in expected}
    assert produced == expected
    assert result.order[-1] == plan.final_id
    # stage-out left every dataset in staged/, from where finalize moved it into the datastore
    paths = {f.lfn: f.path for job in sample.workflow.jobs.values() for f in job.outputs}
    assert json.loads(sample.registry.read_text()) == {paths[lfn]: text for lfn, text in expected.items()}


def test_the_runner_shows_that_a_final_job_beside_the_compute_jobs_races_their_stage_out(tmp_path):
    # The layout Pegasus 5.1.2 planned and ran before: the final job in the compute workflow,
    # a child of its leaves. The planner made each stage_out_* job a child of its compute job
    # only, so DAGMan could run the final job first; the runner stages out as late as DAGMan may.
    sample, plan, out, docs = _written(tmp_path)
    flat = docs["compute.yml"]
    final = next(job for job in docs["workflow.yml"]["jobs"] if job["id"] == plan.final_id)
    parents = {dep["id"] for dep in flat["jobDependencies"]}
    leaves = [job["id"] for job in flat["jobs"] if job["id"] not in parents]
    flat["jobs"].append(final)
    flat["jobDependencies"] += [{"id": leaf, "children": [plan.final_id]} for leaf in leaves]
    (out / "workflow.yml").write_text(json.dumps(flat))
    result = run_workflow(out, tmp_path / "work")
    assert result.order[-1] == plan.final_id
    assert set(result.stage_outs) == set(plan.job_map) - {plan.final_id}
    assert json.loads(sample.registry.read_text()) == {}  # it ran before any output was staged


def test_manifest_dir_becomes_the_job_directory_and_the_manifest_an_output(tmp_path):
    sample, plan, _, docs = _written(tmp_path)
    job = next(j for j in docs["compute.yml"]["jobs"] if plan.job_map[j["id"]]["name"] == "calib.visit-1")
    args = job["arguments"]
    assert args[args.index("--manifest-dir") + 1] == "."
    outputs = {u["lfn"] for u in job["uses"] if u["type"] == "output"}
    assert "calib.visit-1.manifest.json" in outputs
    manifest_dir = Path(sample.workflow.submit_dir) / "manifests"
    assert plan.output_locations["calib.visit-1.manifest.json"] == str(
        manifest_dir / "calib.visit-1.manifest.json"
    )


def test_output_map_stages_each_dataset_for_finalize_by_its_logical_name(tmp_path):
    sample, plan, out, _ = _written(tmp_path)
    lines = (out / "outputs.map").read_text().splitlines()
    mapped = {line.split()[0]: line.split()[1] for line in lines}
    staged = Path(sample.workflow.submit_dir) / "staged"
    for job in sample.workflow.jobs.values():
        for f in job.outputs:
            assert mapped[f.lfn] == f"file://{staged / f.lfn}"
            assert plan.datastore_locations[f.lfn] == str(sample.repo / f.path)
    assert all(line.endswith('site="local"') for line in lines)
    properties = (out / "pegasus.properties").read_text()
    assert "pegasus.dir.storage.mapper = Replica" in properties
    assert f"pegasus.dir.storage.mapper.replica.file = {out / 'outputs.map'}" in properties
    # absolute: Pegasus plans the compute sub-workflow from its run directory
    assert f"pegasus.catalog.replica.file = {out / 'replicas.yml'}" in properties


@pytest.mark.parametrize(
    "name", ["pegasus_local", "pegasus_sharedfs", "pegasus_nonsharedfs", "pegasus_condorio"]
)
def test_shipped_site_configs_translate_to_valid_catalogs(tmp_path, name):
    import yaml

    from bps.workflow import SiteConfig

    path = SHIPPED_SITE_DIR / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    assert data["wms"] == "pegasus"
    if data["site"]["pegasus"].get("ssh_private_key"):
        # the example names a key of the operator's; a throw-away one (mode 0600) stands in
        data["site"]["pegasus"]["ssh_private_key"] = throwaway_key()
    site = SiteConfig(**data["site"])
    sample = build_sample(tmp_path, pegasus=site.pegasus, staging=site.staging)
    sample.workflow.site = site
    plan = translate(sample.workflow)
    out = tmp_path / "out"
    write_plan(plan, out)
    assert schema.validate_directory(out) == {n: [] for n in schema.SCHEMA_OF}
    assert plan.data_configuration == site.pegasus["data_configuration"]


def _site_with(tmp_path: Path, name: str, **changes):
    import yaml

    from bps.workflow import SiteConfig

    path = SHIPPED_SITE_DIR / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())["site"]
    data["pegasus"] = {**data["pegasus"], **changes}
    sample = build_sample(tmp_path, pegasus=data["pegasus"], staging=data["staging"])
    sample.workflow.site = SiteConfig(**data)
    return sample


def test_sharedfs_on_a_pool_needs_pegasus_home_for_the_transfer_tools_on_the_workers(tmp_path):
    with pytest.raises(WmsError, match="needs 'pegasus_home'") as err:
        translate(_site_with(tmp_path, "pegasus_sharedfs", pegasus_home=None).workflow)
    assert "pegasus_sharedfs" in str(err.value)
    plan = translate(_site_with(tmp_path / "ok", "pegasus_sharedfs").workflow)
    pool = next(s for s in to_document(plan.site_catalog)["sites"] if s["name"] == "condorpool")
    assert pool["profiles"]["env"]["PEGASUS_HOME"] == "/opt/pegasus/5.1.2"
    # the planner compares this profile with the string "true"
    assert pool["profiles"]["pegasus"]["auxillary.local"] == "true"


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"staging_user": None}, "set 'staging_user'"),
        ({"ssh_private_key": None}, "needs 'ssh_private_key'"),
        ({"ssh_private_key": "/nonexistent/id_staging"}, "cannot be read"),
        ({"ssh_private_key": "relative/key"}, "absolute"),
        ({"ssh_private_key": "/tmp/id_staging"}, "MOUNT_UNDER_SCRATCH"),
    ],
)
def test_nonsharedfs_over_scp_needs_the_staging_user_and_key(tmp_path, changes, fragment):
    with pytest.raises(WmsError, match=fragment) as err:
        translate(_site_with(tmp_path, "pegasus_nonsharedfs", **changes).workflow)
    assert "pegasus_nonsharedfs" in str(err.value)


def test_a_staging_key_readable_by_others_is_refused_with_the_chmod_that_fixes_it(tmp_path):
    key = throwaway_key()
    Path(key).chmod(0o644)
    with pytest.raises(WmsError, match=f"chmod 600 {key}"):
        translate(_site_with(tmp_path, "pegasus_nonsharedfs", ssh_private_key=key).workflow)
    Path(key).chmod(0o600)
    plan = translate(_site_with(tmp_path / "ok", "pegasus_nonsharedfs", ssh_private_key=key).workflow)
    staging = next(s for s in to_document(plan.site_catalog)["sites"] if s["name"] == "staging")
    assert staging["directories"][0]["fileServers"][0]["url"].startswith("scp://pegasus@staging.example.org/")


def _through_the_api(doc: dict, kind: str) -> dict:
    """The same content put through ``Pegasus.api`` and its public writer: the API's own keys,
    order and omissions (lists the API keeps in sets come back sorted)."""
    from Pegasus.api import File, Namespace, ReplicaCatalog, Workflow
    from Pegasus.api import Job as ApiJob

    from bps.wms.pegasus.document import api_document

    if kind == "replicas":
        rc = ReplicaCatalog()
        for entry in doc["replicas"]:
            for pfn in entry["pfns"]:
                rc.add_replica(pfn["site"], entry["lfn"], pfn["pfn"])
        return api_document(rc)
    wf = Workflow(doc["name"], infer_dependencies=False)
    wf.add_metadata(**doc["metadata"])
    jobs = {}
    for raw in doc["jobs"]:
        job = ApiJob(raw["name"], _id=raw["id"], node_label=raw["nodeLabel"])
        job.add_args(*raw["arguments"])
        for use in raw["uses"]:
            if use["type"] == "input":
                job.add_inputs(File(use["lfn"]))
            else:
                job.add_outputs(
                    File(use["lfn"]), stage_out=use["stageOut"], register_replica=use["registerReplica"]
                )
        for namespace, values in raw["profiles"].items():
            job.add_profiles(Namespace(namespace), **values)
        wf.add_jobs(job)
        jobs[raw["id"]] = job
    for dependency in doc["jobDependencies"]:
        wf.add_dependency(jobs[dependency["id"]], children=[jobs[c] for c in dependency["children"]])
    out = api_document(wf)
    for job in out["jobs"]:
        job["uses"] = sorted(job["uses"], key=lambda use: use["lfn"])
    for dependency in out["jobDependencies"]:
        dependency["children"] = sorted(dependency["children"])
    return out


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_the_documents_written_directly_are_what_the_pegasus_api_writes(tmp_path, config):
    _, _, _, docs = _written(tmp_path, config)
    for name, kind in (("compute.yml", "workflow"), ("replicas.yml", "replicas")):
        ours = docs[name]
        theirs = _through_the_api(ours, kind)
        assert ours["x-pegasus"].keys() == theirs["x-pegasus"].keys()
        del ours["x-pegasus"], theirs["x-pegasus"]
        assert json.dumps(ours) == json.dumps(theirs)  # the same keys in the same order


def test_no_private_pegasus_name_is_imported():
    import ast

    import bps.wms.pegasus

    for path in Path(bps.wms.pegasus.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("Pegasus"):
                names = [a.name for a in node.names]
                assert not [n for n in names if n.startswith("_")], (path.name, names)
                assert not [part for part in node.module.split(".") if part.startswith("_")]


def test_inputs_stored_off_template_are_replicated_from_where_they_are(tmp_path):
    sample = build_sample(tmp_path, pegasus={"execution_site": "local"})
    job = sample.workflow.jobs["isr.visit-1.detector-1"]
    raw = job.inputs[0]
    locations = tmp_path / "isr.json"
    locations.write_text(json.dumps({raw.lfn: "/elsewhere/raw1.fits"}))
    job.arguments += ["--input-locations", str(locations)]
    plan = translate(sample.workflow)
    write_plan(plan, tmp_path / "out")
    replicas = {r["lfn"]: r["pfns"][0]["pfn"] for r in to_document(plan.replica_catalog)["replicas"]}
    assert replicas[raw.lfn] == "file:///elsewhere/raw1.fits"
    pid = next(p for p, e in plan.job_map.items() if e["name"] == job.name)
    assert (
        "--input-locations"
        not in to_document(plan.workflow)["jobs"][list(plan.job_map).index(pid)]["arguments"]
    )


def test_unreadable_input_locations_name_the_file(tmp_path):
    sample = build_sample(tmp_path, pegasus={"execution_site": "local"})
    sample.workflow.jobs["isr.visit-1.detector-1"].arguments += [
        "--input-locations",
        str(tmp_path / "nope.json"),
    ]
    with pytest.raises(WmsError, match="nope.json"):
        translate(sample.workflow)


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=25, unique=True))
@settings(max_examples=60, deadline=None)
def test_any_job_names_give_unique_schema_valid_ids(names):
    from bps.workflow import GenericWorkflow, Job, SiteConfig, safe_name

    wf = GenericWorkflow(
        "w",
        "/tmp/x",
        "/tmp/x/g.qgraph",
        "/tmp/repo",
        "run",
        site=SiteConfig(pegasus={"execution_site": "local"}),
    )
    for name in dict.fromkeys(safe_name(n) for n in names):
        wf.add_job(Job(name, "label", [1], []))
    plan = translate(wf, Path("/tmp/x/pegasus"))
    assert sorted(entry["name"] for entry in plan.job_map.values()) == sorted(wf.jobs)
    assert schema.validation_errors(to_document(plan.workflow), "wf-5.0.yml") == []


def test_translation_logs_no_line_per_job(tmp_path, caplog):
    import logging

    sample = build_sample(tmp_path, pegasus={"execution_site": "local"})
    with caplog.at_level(logging.INFO):
        write_plan(translate(sample.workflow), tmp_path / "out")
    assert not [r for r in caplog.records if r.name.startswith("Pegasus")]


def test_a_site_without_pegasus_section_runs_on_the_submit_host_when_it_is_a_local_site(tmp_path):
    from bps.workflow import SiteConfig

    sample = build_sample(tmp_path)
    sample.workflow.site = SiteConfig(name="local", wms="local")
    assert translate(sample.workflow).settings.execution_site == "local"
    sample.workflow.site = SiteConfig(name="pool", wms="htcondor", staging="transfer")
    plan = translate(sample.workflow)
    assert (plan.settings.execution_site, plan.data_configuration) == ("condorpool", "condorio")
