from typing import Any

from django.core.management.base import BaseCommand

from project.flowers.loading import FLOWERS_CSV, load_flowers


class Command(BaseCommand):
    help = f"Load the iris flowers of {FLOWERS_CSV.name} into the flowers table (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        added = load_flowers()
        self.stdout.write(f"flowers: {added} added from {FLOWERS_CSV}.")
