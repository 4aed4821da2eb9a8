# The portable model bundle (avaffect.app.bundle, docs/bundle.md): per task the submitted system's fusion and
# the models it fuses. Its inputs are those of every system the submission chooses among (BUNDLE_FILES); the
# job copies the chosen one's.
rule bundle:
    input:
        unpack(detector_weights),
        unpack(extractor_weights),
        choices=expand("results/submission_{task}.json", task=TASKS),
        selections=[BUNDLE_FILES["selection"].format(model=m, task=t) for m, t in submitted_models()],
        checkpoints=[
            BUNDLE_FILES["checkpoint"].format(model=m, task=t, window=w)
            for m, t in submitted_models()
            for w in window_tags(m)
        ],
        fusions=expand(BUNDLE_FILES["fusion"], task=TASKS, system=SUBMITTED),
        parameters=expand(BUNDLE_FILES["parameters"], task=TASKS, system=SUBMITTED),
    output:
        # The manifest, not the folder: Snakemake would add a file to a directory() output, unlisted in it.
        manifest="results/bundle/manifest.json",
        archive="results/bundle.tar.gz",
    log:
        "results/logs/bundle.log",
    benchmark:
        "results/benchmarks/bundle.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        tasks=TASKS,
        files=BUNDLE_FILES,
        detectors=list(DETECTOR_WEIGHTS),
        extractor_weights=EXTRACTOR_WEIGHTS,
    script:
        "../workflow/scripts/bundle.py"
