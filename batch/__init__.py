"""The batch layer (docs/batch.md): recompute users from the Bigtable event history with Apache
Beam and the Python engine (operators/), compare with the live profiles, explain a segment, dry-run
a rule. It reads what the job wrote (events rows with seq and rules_version, the rules-log topic)
and never writes where the job writes."""

import logging

# Beam warns at import that GCS is unavailable (google-cloud-storage is not installed; nothing here
# reads GCS): that warning would be the first line of every batch command's output.
logging.getLogger("apache_beam.io.filesystems").setLevel(logging.ERROR)
# The local job service relays every worker's start-up warnings (no semi_persistent_directory,
# discarded DirectRunner arguments): noise on the DirectRunner; its errors still show.
logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
