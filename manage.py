#!/usr/bin/env python3
"""Django's command-line utility for the sfcloud portal."""

import os
import sys

if __name__ == "__main__":
    from cloudstate import privacy

    privacy.private_umask()  # the database and secret key it may create are the portal's alone
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
