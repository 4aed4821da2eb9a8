rule submission:
    input:
        unpack(sample_file),
        fused=lambda w: expand("results/fusion/{task}/{method}/test.parquet", task=w.task, method=SUBMITTED),
        metrics=lambda w: expand("results/fusion/{task}/{method}/metrics.json", task=w.task, method=SUBMITTED),
        probes=lambda w: probes(w.task, ["test"]),
    output:
        "results/submission_{task}.txt",
    log:
        "results/logs/submission/{task}.log",
    benchmark:
        "results/benchmarks/submission/{task}.tsv"
    params:
        samples=lambda w: MANIFEST.samples[w.task]["test"],
        methods=SUBMITTED,
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/submission.py"


rule metrics_table:
    input:
        expand("results/fusion/{task}/{method}/metrics.json", task=TASKS, method=FUSION_METHODS),
    output:
        "results/metrics/validation.csv",
    log:
        "results/logs/metrics_table.log",
    benchmark:
        "results/benchmarks/metrics_table.tsv"
    threads: 1
    resources:
        mem_mb=500,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/metrics_table.py"
