"""insid3.engine.jobs: batch jobs: segment and match over folders, the job manifest, output formats, the Ray Data path."""
