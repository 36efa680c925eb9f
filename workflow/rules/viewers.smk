# Live viewers (napari, Fiji; record: headless, for tests) as rule-managed services, visible in the DAG.
#
#   ensure_viewer    one local job per enabled viewer: check -> connect -> start a detached viewer process
#                    (it outlives the run); writes the identity the viewer answered with (pid, host, auth)
#                    to .openhcs/viewers/<kind>-<port>.json. Runs on every `snakemake` call while streaming
#                    is on (the viewer may have died since the last one).
#   viewer_settings  after them: writes the streaming block the well jobs read (.openhcs/viewers.json).
#   viewers          the target that asks for both: `snakemake viewers` starts the viewers alone and returns.
#
# How the well jobs depend on it without ever running again because of it:
# * process_wells takes .openhcs/viewers.json as an ancient() input, with streaming on or off: the same path
#   either way, so switching streaming on or off changes neither the wells' set of input files nor their
#   params (they read the block from that file, not from a param). ancient() ignores its mtime, and
#   Snakemake does not rerun a job whose only reason would be that an existing ancient() input is rewritten.
# * With streaming off no rule makes the file: it is written here, at parse time, as {} (only when its
#   content differs), so `snakemake -n` shows no viewer job.
# * ensure_viewer runs again on each call: its param `run` is new at every parse, and a changed param is a
#   rerun trigger (in Snakemake's default --rerun-triggers; `snakemake -n` says "Params have changed since
#   last execution"). `all` and `viewers` ask for its output too, so it also runs when that is missing.
# * Local rules: under cluster executors they run in the main Snakemake process (the submit host). Not
#   service() (its consumers would form one group with summed resources); no group.

import uuid

from openhcs_rules.streaming.ensure import (
    VIEWER_RECORD,
    VIEWER_SETTINGS,
    settings_text,
    viewer_records,
    viewer_section,
    write_settings,
)

VIEWER_RECORDS = viewer_records(SCREEN["streaming"])
# what `all` and `viewers` ask for: the viewers' records and settings, when streaming is on
VIEWER_TARGETS = [*VIEWER_RECORDS, VIEWER_SETTINGS] if VIEWER_RECORDS else []


if VIEWER_RECORDS:

    localrules:
        ensure_viewer,
        viewer_settings,

    rule ensure_viewer:
        output:
            VIEWER_RECORD,
        params:
            streaming=lambda wc: json.dumps(viewer_section(SCREEN["streaming"], wc.kind)),
            run=uuid.uuid4().hex,  # new every call: the viewer is checked (and started) again each run
        wildcard_constraints:
            kind="napari|fiji|record",
            port=r"\d+",
        log:
            "logs/viewers/{kind}-{port}.log",
        conda:
            "../envs/openhcs.yaml"
        shell:
            "\"$OPENHCS_RULES_PYTHON\" -m openhcs_rules viewer ensure --streaming {params.streaming:q}"
            " --out {output:q} > {log:q} 2>&1"

    rule viewer_settings:
        input:
            VIEWER_RECORDS,
        output:
            VIEWER_SETTINGS,
        params:
            settings=settings_text(SCREEN["streaming"]),
        log:
            "logs/viewers/settings.log",
        conda:
            "../envs/openhcs.yaml"
        shell:
            "printf '%s' {params.settings:q} > {output:q} 2> {log:q}"

else:
    write_settings(VIEWER_SETTINGS, SCREEN["streaming"])


localrules:
    viewers,


rule viewers:  # `snakemake viewers`: with streaming off it asks for nothing
    input:
        VIEWER_TARGETS,
