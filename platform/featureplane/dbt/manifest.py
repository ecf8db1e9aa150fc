"""Reading a dbt ``manifest.json``: models, where dbt builds them, their SQL and their YAML ``meta``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

MODEL_LIKE = ("model", "seed", "snapshot")
META_NAMESPACE = "featureplane"


class Manifest:
    """The parts of a parsed dbt project that featureplane reads."""

    def __init__(self, data: dict[str, Any], project_dir: Path) -> None:
        self.data = data
        self.project_dir = Path(project_dir)
        self.project_name: str = data.get("metadata", {}).get("project_name", "")
        self.nodes: dict[str, dict[str, Any]] = data.get("nodes", {})
        self.macros: dict[str, dict[str, Any]] = data.get("macros", {})
        self.models: dict[str, dict[str, Any]] = {}
        for node in self.nodes.values():
            if node.get("resource_type") != "model":
                continue
            name = node["name"]
            # A model of the project itself wins over a package's model of the same name.
            if name not in self.models or node.get("package_name") == self.project_name:
                self.models[name] = node

    def model(self, name: str) -> dict[str, Any] | None:
        return self.models.get(name)

    def describe_models(self) -> str:
        return ", ".join(sorted(self.models)) or "none"

    def relation(self, name: str) -> tuple[str, str]:
        """``(schema, identifier)`` of the table or view dbt builds for the model."""
        node = self.models[name]
        return node["schema"], node.get("alias") or node["name"]

    @staticmethod
    def meta(node: dict[str, Any]) -> dict[str, Any]:
        """The node's ``meta``, whether written under ``config:`` or (older style) beside it."""
        return {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}

    def sql_path(self, node: dict[str, Any]) -> Path:
        return self.project_dir / node["original_file_path"]

    def yaml_path(self, node: dict[str, Any]) -> Path | None:
        """The properties (YAML) file that describes the model, if any."""
        patch = node.get("patch_path")
        if not patch:
            return None
        return self.project_dir / patch.split("://", 1)[-1]

    def upstream(self, unique_id: str) -> list[str]:
        """Every model, seed and snapshot the node is built from, transitively (sources excluded)."""
        seen: set[str] = set()
        stack = [unique_id]
        while stack:
            node = self.nodes.get(stack.pop())
            for parent in (node or {}).get("depends_on", {}).get("nodes", []):
                if parent not in seen and parent.split(".", 1)[0] in MODEL_LIKE:
                    seen.add(parent)
                    stack.append(parent)
        return sorted(seen)

    def _project_macros(self, unique_ids: list[str]) -> list[str]:
        """The project's own macros used by these nodes, transitively (dbt's and packages' excluded)."""
        seen: set[str] = set()
        stack = [m for uid in unique_ids for m in self.nodes[uid].get("depends_on", {}).get("macros", [])]
        while stack:
            macro_id = stack.pop()
            macro = self.macros.get(macro_id)
            if macro is None or macro_id in seen or macro.get("package_name") != self.project_name:
                continue
            seen.add(macro_id)
            stack += macro.get("depends_on", {}).get("macros", [])
        return sorted(seen)

    def sql_hash(self, name: str) -> str:
        """A hash of what the model's rows are computed from: its SQL, the SQL of every model upstream of
        it and the project's macros they use. Formatting inside the SQL counts; YAML does not."""
        node = self.models[name]
        unique_ids = [node["unique_id"], *self.upstream(node["unique_id"])]
        digest = hashlib.sha256()
        for uid in unique_ids:
            item = self.nodes[uid]
            code = item.get("raw_code") or item.get("checksum", {}).get("checksum", "")
            digest.update(f"{uid}\0{code}\0".encode())
        for macro_id in self._project_macros(unique_ids):
            digest.update(f"{macro_id}\0{self.macros[macro_id].get('macro_sql', '')}\0".encode())
        return digest.hexdigest()[:16]

    def feature_view_models(self) -> list[dict[str, Any]]:
        """The models whose YAML ``meta`` declares a feature view (``featureplane: {feature_view: ...}``)."""
        found = []
        for name in sorted(self.models):
            node = self.models[name]
            namespace = self.meta(node).get(META_NAMESPACE)
            if isinstance(namespace, dict) and "feature_view" in namespace:
                found.append(node)
        return found
