if config["separation"]["method"] == "spleeter":

    rule separate_vocals:
        input:
            unpack(spleeter_runtime),
            audio="results/audio/raw/{video}.wav",
            model=SPLEETER_MODEL_FILES,
        output:
            "results/audio/vocals/{video}.wav",
        log:
            "results/logs/separate_vocals/{video}.log",
        benchmark:
            "results/benchmarks/separate_vocals/{video}.tsv"
        conda:
            "../envs/spleeter.yaml"
        threads: config["separation"]["spleeter"]["threads"]
        resources:
            mem_mb=config["separation"]["spleeter"]["mem_mb"],
        params:
            python=lambda w, input: "python" if SPLEETER_IN_CONDA else venv_python(Path(input.venv).parent),
            script=Path(workflow.basedir) / "workflow" / "scripts" / "separate_vocals_spleeter.py",
            model_dir=lambda w, input: Path(input.model[0]).parent,
            chunk_s=config["separation"]["spleeter"]["chunk_s"],
            overlap_s=config["separation"]["spleeter"]["overlap_s"],
        shell:
            "{params.python} {params.script:q} {input.audio:q} {params.model_dir:q} {output:q} --log {log:q} "
            "--chunk-s {params.chunk_s} --overlap-s {params.overlap_s}"


rule unpack_spleeter_model:
    input:
        resource_path("spleeter_2stems"),
    output:
        SPLEETER_MODEL_FILES,
    log:
        "results/logs/unpack_spleeter_model.log",
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=500,
    params:
        model_dir=lambda w, output: Path(output[0]).parent,
    script:
        "../workflow/scripts/unpack_spleeter_model.py"
