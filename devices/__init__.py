"""Device profiles, requirements and service files for running edgecam on small machines.

Pure data plus a loader: nothing here imports an inference runtime.

Example:
    >>> import devices
    >>> "rpi5" in devices.list_profiles()
    True
"""

from devices.cli import cli_main, format_profiles_table
from devices.registry import (
    ArtifactFormat,
    Backend,
    CaptureMode,
    DeviceProfile,
    list_profiles,
    load_profile,
)
from devices.run_settings import RunSettings, resolve_run_settings

__all__ = [
    "ArtifactFormat",
    "Backend",
    "CaptureMode",
    "DeviceProfile",
    "RunSettings",
    "cli_main",
    "format_profiles_table",
    "list_profiles",
    "load_profile",
    "resolve_run_settings",
]
