rule extract_audio:
    input:
        video=video_file,
        probe="results/probe/{video}.json",
    output:
        "results/audio/raw/{video}.wav",
    log:
        "results/logs/extract_audio/{video}.log",
    benchmark:
        "results/benchmarks/extract_audio/{video}.tsv"
    params:
        sample_rate=config["audio"]["sample_rate"],
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/extract_audio.py"


rule separate_vocals:
    input:
        "results/audio/raw/{video}.wav",
    output:
        "results/audio/vocals/{video}.wav",
    log:
        "results/logs/separate_vocals/{video}.log",
    benchmark:
        "results/benchmarks/separate_vocals/{video}.tsv"
    params:
        method=config["separation"]["method"],
    threads: 1
    resources:
        mem_mb=1000,
    conda:
        "../envs/main.yaml"
    script:
        "../workflow/scripts/separate_vocals.py"
