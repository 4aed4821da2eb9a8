rule submission:
    input:
        fused="results/fusion/{task}/dirichlet/test.parquet",
        probes=lambda w: probes(w.task, ["test"]),
    output:
        "results/submission_{task}.txt",
    log:
        "results/logs/submission/{task}.log",
    benchmark:
        "results/benchmarks/submission/{task}.tsv"
    params:
        samples=lambda w: MANIFEST.samples[w.task]["test"],
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/submission.py"
