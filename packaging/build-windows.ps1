# Windows: the windowed kgmon.exe (+ kgmon-cli.exe) and the NSIS installer
# (on a Windows machine; the release workflow runs it).
#
#   pwsh packaging/build-windows.ps1
#
#   dist\kgmon\                                                 the onedir (build.spec: .ico, version resource)
#   dist\KindlyGuard-Monitor-<version>-windows-x64-setup.exe    packaging\windows\kindlyguard-monitor.nsi
#
# Signing happens when WINDOWS_SIGN_PFX (path) and WINDOWS_SIGN_PASSWORD are set:
# signtool signs both exes before the installer packs them, then the installer.
$ErrorActionPreference = "Stop"
Set-Location (Join-Path $PSScriptRoot "..")
$python = if ($env:PYTHON) { $env:PYTHON } else { "python" }

function Invoke-Checked([string]$exe, [string[]]$arguments) {
  & $exe @arguments
  if ($LASTEXITCODE -ne 0) { throw "$exe $($arguments -join ' ') failed ($LASTEXITCODE)" }
}

$version = (& $python packaging/freeze.py version).Trim()
$version4 = (& $python -c "import sys; sys.path.insert(0, 'packaging'); import freeze; print('.'.join(map(str, freeze.version_tuple())))").Trim()
$budget = (& $python -c "import sys; sys.path.insert(0, 'packaging'); import freeze; print(freeze.budget_mib('win32'))").Trim()

Write-Host "build-windows: pyinstaller build.spec ($version)"
Invoke-Checked $python @("-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN", "--distpath", "dist", "--workpath", "build/pyinstaller", "build.spec")
Invoke-Checked $python @("packaging/freeze.py", "check", "dist/kgmon", $budget)
$said = (& "dist\kgmon\kgmon-cli.exe" --version).Trim()
if ($said -ne "kgmon $version") { throw "kgmon-cli.exe --version said '$said'" }

function Sign([string]$file) {
  if ($env:WINDOWS_SIGN_PFX) {
    Invoke-Checked "signtool" @("sign", "/f", $env:WINDOWS_SIGN_PFX, "/p", $env:WINDOWS_SIGN_PASSWORD, "/fd", "SHA256", "/tr", "http://timestamp.digicert.com", "/td", "SHA256", $file)
  }
}
Sign "dist\kgmon\kgmon.exe"
Sign "dist\kgmon\kgmon-cli.exe"

$makensis = (Get-Command makensis -ErrorAction SilentlyContinue).Source
if (-not $makensis) { $makensis = "${env:ProgramFiles(x86)}\NSIS\makensis.exe" }
if (-not (Test-Path $makensis)) { throw "makensis not found: install NSIS (choco install nsis)" }
$out = "dist\KindlyGuard-Monitor-$version-windows-x64-setup.exe"
Invoke-Checked $makensis @("/V2", "/WX", "/DVERSION=$version", "/DVERSION4=$version4", "/DDIST=$(Resolve-Path dist)", "/DOUTFILE=$(Join-Path (Resolve-Path dist) (Split-Path $out -Leaf))", "packaging\windows\kindlyguard-monitor.nsi")
Sign $out
Write-Host "build-windows: done: $out"
