rule fuse:
    input:
        validation=expand("results/predictions/{model}/{{task}}/validation.parquet", model=MODELS),
        test=expand("results/predictions/{model}/{{task}}/test.parquet", model=MODELS),
        probes=lambda w: probes(w.task, ["validation"]),
        annotations=lambda w: annotations(w.task, "validation"),
    output:
        weights="results/fusion/{task}/dirichlet/weights.json",
        validation="results/fusion/{task}/dirichlet/validation.parquet",
        test="results/fusion/{task}/dirichlet/test.parquet",
        metrics="results/fusion/{task}/dirichlet/metrics.json",
    log:
        "results/logs/fuse/{task}.log",
    benchmark:
        "results/benchmarks/fuse/{task}.tsv"
    params:
        models=list(MODELS),
        corpus=str(CORPUS),
        draws=config["fusion"]["draws"],
        seed=config["fusion"]["seed"],
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/fuse.py"
