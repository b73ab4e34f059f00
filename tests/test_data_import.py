"""`harness data import` unpacks official archives safely; `harness data check` compares counts."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import zipfile


from fixtures_vireid import make_regdb, make_sysu


def _snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_import_sysu_zip_strips_the_release_folder_and_checks(tmp_path, cli):
    release = make_sysu(tmp_path / "src" / "SYSU-MM01")
    archive = tmp_path / "SYSU-MM01.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(release.rglob("*")):
            handle.write(path, path.relative_to(tmp_path / "src"))
    target = tmp_path / "data" / "sysu"
    code, out, err = cli("data", "import", "sysu-mm01", archive, "--data-root", target)
    assert code == 0, err
    assert "stripped its top folder SYSU-MM01/" in out
    assert (target / "cam3" / "0005" / "0001.jpg").is_file() and (target / "exp" / "test_id.txt").is_file()
    code, out, err = cli("data", "check", "sysu-mm01", "--data-root", target)
    assert code == 2 and "differ from the official release" in err
    assert "RGB images" in out and "30071" in out and "✗" in out
    rgb = next(line for line in out.splitlines() if "RGB images" in line)
    assert rgb.split()[2] == str(7 * 4 * 2 - 2)  # 7 people × 4 RGB cameras × 2, person 7 lacks camera 5


def test_import_refuses_parent_and_absolute_entries_and_writes_nothing(tmp_path, cli):
    outside = tmp_path / "outside"
    outside.mkdir()
    before = _snapshot(tmp_path)
    for name in ("../evil.txt", "RegDB/../../evil.txt", "/tmp/evil-absolute.txt"):
        archive = tmp_path / f"crafted-{abs(hash(name))}.zip"
        with zipfile.ZipFile(archive, "w") as handle:
            handle.writestr("RegDB/idx/ok.txt", "fine")
            handle.writestr(zipfile.ZipInfo(name), "pwned")
        code, out, err = cli("data", "import", "regdb", archive, "--data-root", tmp_path / "data" / "regdb")
        assert code == 2, (name, out, err)
        assert "refusing" in err and repr(name) in err
        assert not (tmp_path / "data").exists()
        archive.unlink()
    assert _snapshot(tmp_path) == before
    assert not os.path.exists("/tmp/evil-absolute.txt")


def _tar_with(tmp_path, name, *members):
    archive = tmp_path / name
    with tarfile.open(archive, "w:gz") as handle:
        for info, data in members:
            handle.addfile(info, io.BytesIO(data) if data is not None else None)
    return archive


def test_import_refuses_links_out_and_special_files_in_tars(tmp_path, cli):
    ok = tarfile.TarInfo("RegDB/idx/ok.txt")
    ok.size = 4
    link = tarfile.TarInfo("RegDB/escape")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../etc"
    absolute = tarfile.TarInfo("RegDB/abs")
    absolute.type, absolute.linkname = tarfile.SYMTYPE, "/etc/passwd"
    fifo = tarfile.TarInfo("RegDB/pipe")
    fifo.type = tarfile.FIFOTYPE
    hard = tarfile.TarInfo("RegDB/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../secret"
    for bad, message in ((link, "uses '..'"), (absolute, "outside the archive"), (fifo, "device file or FIFO"), (hard, "contains '..'")):
        archive = _tar_with(tmp_path, "bad.tar.gz", (ok, b"fine"), (bad, None))
        code, _, err = cli("data", "import", "regdb", archive, "--data-root", tmp_path / "data" / "regdb")
        assert code == 2 and message in err, (bad.name, err)
        assert not (tmp_path / "data").exists()
        assert not any(p.name.startswith(".regdb.importing") for p in tmp_path.rglob("*"))


def test_import_keeps_inside_links_and_refuses_a_full_target(tmp_path, cli):
    regdb = make_regdb(tmp_path / "src" / "RegDB", people=4, per_person=1, trials=1)
    archive = tmp_path / "RegDB.tar"
    with tarfile.open(archive, "w") as handle:
        handle.add(regdb, "RegDB")
        alias = tarfile.TarInfo("RegDB/idx/latest.txt")
        alias.type, alias.linkname = tarfile.SYMTYPE, "test_visible_1.txt"
        handle.addfile(alias)
    target = tmp_path / "data" / "regdb"
    code, out, err = cli("data", "import", "regdb", archive, "--data-root", target)
    assert code == 0, err
    assert (target / "idx" / "latest.txt").read_text() == (target / "idx" / "test_visible_1.txt").read_text()
    code, _, err = cli("data", "import", "regdb", archive, "--data-root", target)
    assert code == 2 and "not empty" in err
    code, out, err = cli("data", "check", "regdb", "--data-root", target, "--dataset-option", "strict=false")
    assert code == 2 and "Visible images" in out
    shutil.rmtree(target)
