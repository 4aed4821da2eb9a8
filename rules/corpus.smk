if config["corpus"]["demo"]:

    rule build_demo_corpus:
        output:
            readme=str(CORPUS / "README.md"),
            test_labels_readme=str(Path(config["corpus"]["demo_test_labels"]) / "README.md"),
            files=[str(p) for p in demo_corpus_files(CORPUS, Path(config["corpus"]["demo_test_labels"]))],
        log:
            "results/logs/build_demo_corpus.log",
        benchmark:
            "results/benchmarks/build_demo_corpus.tsv"
        conda:
            "../envs/main.yaml"
        params:
            root=lambda w, output: str(Path(output.readme).parent),
            test_labels=lambda w, output: str(Path(output.test_labels_readme).parent),
        script:
            "../workflow/scripts/build_demo_corpus.py"
