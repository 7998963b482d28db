"""graphite-web settings for the test oracle: everything under $ORACLE_ROOT."""

import os

_root = os.environ["ORACLE_ROOT"]
SECRET_KEY = "statsyard-test-oracle"
STORAGE_DIR = _root
WHISPER_DIR = os.path.join(_root, "whisper")
LOG_DIR = os.path.join(_root, "log")
INDEX_FILE = os.path.join(_root, "index")
STANDARD_DIRS = [WHISPER_DIR]
TIME_ZONE = "UTC"
DEFAULT_XFILES_FACTOR = 0
TAGDB = "graphite.tags.localdatabase.LocalDatabaseTagDB"
DATABASES = {
    "default": {
        "NAME": os.path.join(_root, "graphite.db"),
        "ENGINE": "django.db.backends.sqlite3",
    }
}
CARBONLINK_HOSTS: list[str] = []
FUNCTION_PLUGINS: list[str] = []
DEFAULT_CACHE_DURATION = 0
