"""dbt projects upstream of feature views: finding the project, keeping its manifest current, reading it.

featureplane.yaml names the project (``dbt: {project_dir: ../dbt}``). Everything featureplane needs from
dbt (models, where they are built, their SQL, the feature views declared in their YAML) comes from the
project's ``manifest.json``, which ``dbt parse`` writes and which is re-parsed only when a file of the
project changes. Only the standard library is imported here; dbt itself runs as a subprocess.
"""

from featureplane.dbt.manifest import Manifest
from featureplane.dbt.project import DbtError, DbtProject, dbt_project, load_manifest, prepare_manifest

__all__ = ["DbtError", "DbtProject", "Manifest", "dbt_project", "load_manifest", "prepare_manifest"]
