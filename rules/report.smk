rule system_submission:
    input:
        unpack(sample_file),
        fused="results/fusion/{task}/{system}/test.parquet",
        probes=lambda w: probes(w.task, ["test"]),
    output:
        "results/submissions/{system}/submission_{task}.txt",
    log:
        "results/logs/system_submission/{system}/{task}.log",
    benchmark:
        "results/benchmarks/system_submission/{system}/{task}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        samples=lambda w: MANIFEST.samples[w.task]["test"],
    script:
        "../workflow/scripts/system_submission.py"


rule submission:
    input:
        submissions=lambda w: expand(
            "results/submissions/{system}/submission_{task}.txt", system=SUBMITTED, task=w.task
        ),
        metrics=lambda w: expand("results/fusion/{task}/{system}/metrics.json", task=w.task, system=SUBMITTED),
    output:
        submission="results/submission_{task}.txt",
        choice="results/submission_{task}.json",
    log:
        "results/logs/submission/{task}.log",
    benchmark:
        "results/benchmarks/submission/{task}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        systems=SUBMITTED,
    script:
        "../workflow/scripts/submission.py"


rule metrics_table:
    input:
        expand("results/fusion/{task}/{system}/metrics.json", task=TASKS, system=SYSTEMS),
    output:
        report(
            "results/metrics/validation.csv",
            caption="../workflow/report/metrics.rst",
            category="Validation metrics",
            labels={"table": "validation scores"},
        ),
    log:
        "results/logs/metrics_table.log",
    benchmark:
        "results/benchmarks/metrics_table.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=500,
    script:
        "../workflow/scripts/metrics_table.py"


rule validation_figures:
    input:
        fused=lambda w: expand("results/fusion/{task}/{system}/validation.parquet", task=w.task, system=SUBMITTED),
        choice="results/submission_{task}.json",
        probes=lambda w: probes(w.task, ["validation"]),
        annotations=lambda w: annotations(w.task, "validation"),
    output:
        report(
            directory("results/report/validation/{task}"),
            patterns=["{video}.png"],
            caption="../workflow/report/validation.rst",
            category="Validation predictions",
            subcategory="{task}",
            labels={"task": "{task}", "video": "{video}"},
        ),
    log:
        "results/logs/validation_figures/{task}.log",
    benchmark:
        "results/benchmarks/validation_figures/{task}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        samples=lambda w: split_samples(w.task, "validation"),
        systems=SUBMITTED,
        corpus=str(CORPUS),
    script:
        "../workflow/scripts/validation_figures.py"


rule runtimes:
    input:
        # Everything else the workflow makes, so that every other job's benchmark file is there.
        expand("results/submission_{task}.txt", task=TASKS),
        "results/bundle.tar.gz",
        expand("results/submissions/{system}/submission_{task}.txt", system=SYSTEMS, task=TASKS),
        "results/metrics/validation.csv",
        expand("results/report/validation/{task}", task=TASKS),
    output:
        table=report(
            "results/report/runtimes.csv",
            caption="../workflow/report/runtimes.rst",
            category="Runtimes",
            labels={"figure": "table per rule"},
        ),
        figure=report(
            "results/report/runtimes.png",
            caption="../workflow/report/runtimes.rst",
            category="Runtimes",
            labels={"figure": "chart per rule"},
        ),
    log:
        "results/logs/runtimes.log",
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    # No benchmark: the table would show this rule's own previous run.
    params:
        benchmarks="results/benchmarks",
    script:
        "../workflow/scripts/runtimes.py"
