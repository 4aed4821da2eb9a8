# One job per video writes both: at Aff-Wild2 scale every per-video job adds to each DAG build (docs/benchmarks.md).
rule ingest_video:
    input:
        video=video_file,
    output:
        probe="results/probe/{video}.json",
        audio="results/audio/raw/{video}.wav",
    log:
        "results/logs/ingest_video/{video}.log",
    benchmark:
        "results/benchmarks/ingest_video/{video}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        sample_rate=config["audio"]["sample_rate"],
    script:
        "../workflow/scripts/ingest_video.py"


rule detect_faces:
    input:
        unpack(detector_weights),
        unpack(detector_venvs),
        video=sample_video,
        probe=sample_probe,
    output:
        "results/faces/{sample}.parquet",
    log:
        "results/logs/detect_faces/{sample}.log",
    benchmark:
        "results/benchmarks/detect_faces/{sample}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        detector=config["faces"]["detector"],
        settings={name: section("faces", name) for name in config["faces"]["detector"].split("+")},
        weights={name: RESOURCES[key].to_dict() for name, key in DETECTOR_WEIGHTS.items()},
        accept_unpinned=config["resources"]["accept_unpinned"],
        pythons=lambda w, input: {name: str(venv_python(Path(input[f"{name}_venv"]).parent)) for name in DETECTOR_VENVS},
        batch_size=config["faces"]["batch_size"],
        tracking=section("faces", "tracking"),
        device=config["device"],
        engine=config["engine"],
    script:
        "../workflow/scripts/detect_faces.py"


rule face_landmarks:
    input:
        video=sample_video,
        faces="results/faces/{sample}.parquet",
        probe=sample_probe,
    output:
        "results/landmarks/{sample}.parquet",
    log:
        "results/logs/face_landmarks/{sample}.log",
    benchmark:
        "results/benchmarks/face_landmarks/{sample}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        crop_margin=config["landmarks"]["crop_margin"],
    script:
        "../workflow/scripts/face_landmarks.py"


rule voice_activity:
    input:
        unpack(vad_inputs),
        probe=sample_probe,
    output:
        "results/vad/{sample}.parquet",
    log:
        "results/logs/voice_activity/{sample}.log",
    benchmark:
        "results/benchmarks/voice_activity/{sample}.tsv"
    conda:
        "../envs/main.yaml"
    threads: 1
    resources:
        mem_mb=1000,
    params:
        vad=section("vad"),
    script:
        "../workflow/scripts/voice_activity.py"
