rule fuse:
    input:
        validation=system_predictions("validation"),
        test=system_predictions("test"),
        probes=lambda w: probes(w.task, ["validation"]),
        annotations=lambda w: annotations(w.task, "validation"),
    output:
        parameters="results/fusion/{task}/{system}/parameters.json",
        fusion="results/fusion/{task}/{system}/fusion.safetensors",
        validation="results/fusion/{task}/{system}/validation.parquet",
        test="results/fusion/{task}/{system}/test.parquet",
        metrics="results/fusion/{task}/{system}/metrics.json",
    log:
        "results/logs/fuse/{task}/{system}.log",
    benchmark:
        "results/benchmarks/fuse/{task}/{system}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 2
    resources:
        mem_mb=4000,
    params:
        models=lambda w: system_models(w.system, w.task),
        method=lambda w: SYSTEMS[w.system].method,
        corpus=str(CORPUS),
        fusion=lambda w: fusion_settings(w.system),
    script:
        "../workflow/scripts/fuse.py"
