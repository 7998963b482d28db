"""Run graphite-web's own /render view in-process, as a test oracle.

Started by tests/test_render_graphite_web.py with Debian's python3 (where the
graphite-web package lives), with ORACLE_ROOT pointing at a directory of
directory to work in. Reads from stdin a JSON object: "now" (epoch seconds),
"series", Graphite name to {"step", "points": [[timestamp, value], ...]}
(written to whisper files as carbon would, every name registered in
graphite-web's tag database), and "requests", a list of /render query
parameters; writes a JSON list of {"status", "body"}.
"""

import json
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "graphite.settings")
os.environ["GRAPHITE_SETTINGS_MODULE"] = "oracle_settings"
os.makedirs(os.path.join(os.environ["ORACLE_ROOT"], "log"), exist_ok=True)

import django  # noqa: E402

django.setup()

import whisper  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import RequestFactory  # noqa: E402
from graphite.render.views import renderView  # noqa: E402
from graphite.storage import STORE  # noqa: E402
from graphite.tags.utils import TaggedSeries  # noqa: E402

job = json.load(sys.stdin)
call_command("migrate", verbosity=0, interactive=False)
whisper_dir = os.path.join(os.environ["ORACLE_ROOT"], "whisper")
for name, spec in job["series"].items():
    # Plain series go into the tag database too: StatsYard's seriesByTag()
    # reaches default-entity series through their name tag.
    STORE.tagdb.tag_series(name)
    if ";" in name:
        relative = TaggedSeries.encode(name, os.sep)
    else:
        relative = name.replace(".", os.sep)
    path = os.path.join(whisper_dir, relative + ".wsp")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    whisper.create(path, [(spec["step"], 200_000 // spec["step"])])
    for timestamp, value in spec["points"]:
        whisper.update(path, value, timestamp, now=job["now"])
factory = RequestFactory()
out = []
for params in job["requests"]:
    try:
        response = renderView(factory.get("/render", params))
        out.append({"status": response.status_code, "body": response.content.decode()})
    except Exception as exc:  # noqa: BLE001 (report any failure to the test)
        out.append({"status": "error", "body": f"{type(exc).__name__}: {exc}"})
json.dump(out, sys.stdout)
