from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("constituents", "0022_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="PersonLink",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True,
                                        serialize=False, verbose_name="ID")),
                ("token", models.CharField(max_length=64, unique=True)),
                ("note", models.CharField(blank=True, max_length=200)),
                ("created", models.DateTimeField(auto_now_add=True)),
                ("fahanie_cares_member", models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE,
                    related_name="person_links",
                    to="constituents.bmparliamentmember")),
            ],
        ),
    ]
