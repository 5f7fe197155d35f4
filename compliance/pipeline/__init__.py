"""The unlearning pipeline: model registry, jobs (unlearn → verify → certify), certificates, guard."""
