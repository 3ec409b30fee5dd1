# Release green: PersonLink.fahanie_cares_member becomes bm_parliament_member,
# and so its column fahanie_cares_member_id becomes bm_parliament_member_id
# (ALTER TABLE unified_db_personlink RENAME COLUMN; see
# `python3 manage.py sqlmigrate unified_db 0002`). Release blue's code reads
# the old column: once this has run, blue fails every query of the table
# until it is reversed with `python3 manage.py migrate unified_db 0001`.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("unified_db", "0001_initial"),
    ]

    operations = [
        migrations.RenameField(
            model_name="personlink",
            old_name="fahanie_cares_member",
            new_name="bm_parliament_member",
        ),
    ]
