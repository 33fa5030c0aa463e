"""Package metadata comes from settings.ini (nbdev 2); no pkg_resources (removed in setuptools 84)."""
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read(Path(__file__).parent / "settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable", "6 - Mature", "7 - Inactive"]
lic = licenses[cfg["license"]]
requirements = cfg.get("requirements", "").split()
dev_requirements = cfg.get("dev_requirements", "").split()
scripts = [s.strip() for s in cfg.get("console_scripts", "").split() if s.strip()]
readme = Path(__file__).parent / "README.md"

setuptools.setup(
    name=cfg["lib_name"].replace("_", "-"),
    version=cfg["version"],
    description=cfg["description"],
    long_description=readme.read_text(encoding="utf-8") if readme.exists() else cfg["description"],
    long_description_content_type="text/markdown",
    license=lic[0],
    classifiers=[
        "Development Status :: " + statuses[int(cfg["status"])],
        "Intended Audience :: " + cfg["audience"].title(),
        "License :: " + lic[1],
        "Natural Language :: " + cfg["language"].title(),
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    url=cfg["git_url"],
    author=cfg["author"],
    author_email=cfg["author_email"],
    keywords=cfg["keywords"],
    # the pipeline notebooks (nbs/pipelines) ship inside the package as dbp_ae/pipelines, so that `dbp-ae reproduce`
    # finds them in a non-editable install too (dbp_ae.reproduce.pipelines_dir)
    packages=setuptools.find_packages(include=[cfg["lib_name"], cfg["lib_name"] + ".*"]) + [cfg["lib_name"] + ".pipelines"],
    package_dir={cfg["lib_name"] + ".pipelines": "nbs/pipelines"},
    package_data={cfg["lib_name"] + ".pipelines": ["*.ipynb"]},
    include_package_data=True,
    install_requires=requirements,
    extras_require={"dev": dev_requirements},
    python_requires=">=" + cfg["min_python"],
    zip_safe=False,
    entry_points={"console_scripts": scripts, "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"]},
)
