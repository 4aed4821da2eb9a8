rule fuse:
    input:
        validation=expand("results/predictions/{model}/{{task}}/validation.parquet", model=FUSED_MODELS),
        test=expand("results/predictions/{model}/{{task}}/test.parquet", model=FUSED_MODELS),
        probes=lambda w: probes(w.task, ["validation"]),
        annotations=lambda w: annotations(w.task, "validation"),
    output:
        parameters="results/fusion/{task}/{method}/parameters.json",
        validation="results/fusion/{task}/{method}/validation.parquet",
        test="results/fusion/{task}/{method}/test.parquet",
        metrics="results/fusion/{task}/{method}/metrics.json",
    log:
        "results/logs/fuse/{task}/{method}.log",
    benchmark:
        "results/benchmarks/fuse/{task}/{method}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        models=FUSED_MODELS,
        corpus=str(CORPUS),
        fusion=lambda w: fusion_settings(w.method),
    script:
        "../workflow/scripts/fuse.py"
