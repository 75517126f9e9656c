; KindlyGuard Monitor: the Windows installer (NSIS 3).
;
;   makensis /DVERSION=0.1.0 /DVERSION4=0.1.0.0 /DDIST=dist /DOUTFILE=dist\setup.exe packaging\windows\kindlyguard-monitor.nsi
;
; packaging/build-windows.ps1 runs it on the PyInstaller onedir (DIST\kgmon). Why
; NSIS: one small self-contained setup.exe that installs per user without an
; administrator (%LOCALAPPDATA%\Programs, HKCU), the compiler is in Debian, so
; CI compiles this script on every run (tests/e2e/test_packaging.py), and it signs
; like any exe. (Inno Setup only compiles on Windows; an MSI via WiX suits
; managed fleets, and can come later from the same onedir.)
;
; Pages: licence-free welcome, folder, components (Start menu: always; desktop
; shortcut, start at login: optional), install, finish (start the app).
; Start at login writes the same Run value the app's own setting writes
; (kindlyguard_monitor/gui/autostart.py: HKCU\...\Run "KindlyGuard Monitor" = "<exe>" --hidden),
; so either side can turn it off. Uninstall removes the files, the shortcuts,
; the Run value and the uninstall entry; the user's settings and threat history
; stay (they are the user's data), as Windows apps do.

Unicode true
ManifestDPIAware true
SetCompressor /SOLID lzma
Target amd64-unicode

!ifndef VERSION
  !error "pass /DVERSION=x.y.z"
!endif
!ifndef VERSION4
  !define VERSION4 "${VERSION}.0"
!endif
!ifndef DIST
  !define DIST "..\..\dist"
!endif
!ifndef OUTFILE
  !define OUTFILE "${DIST}\KindlyGuard-Monitor-${VERSION}-windows-x64-setup.exe"
!endif

!define APP_NAME "KindlyGuard Monitor"
!define PUBLISHER "KindlyGuard"
!define EXE "kgmon.exe"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\KindlyGuardMonitor"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define ICON "${__FILEDIR__}\..\..\resources\windows\kindlyguard.ico"

Name "${APP_NAME}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\${APP_NAME}"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
RequestExecutionLevel user
BrandingText "${APP_NAME} ${VERSION}"

VIProductVersion "${VERSION4}"
VIFileVersion "${VERSION4}"
VIAddVersionKey /LANG=1033 "ProductName" "${APP_NAME}"
VIAddVersionKey /LANG=1033 "CompanyName" "${PUBLISHER}"
VIAddVersionKey /LANG=1033 "FileDescription" "${APP_NAME} Setup"
VIAddVersionKey /LANG=1033 "FileVersion" "${VERSION}"
VIAddVersionKey /LANG=1033 "ProductVersion" "${VERSION}"
VIAddVersionKey /LANG=1033 "LegalCopyright" "© ${PUBLISHER}"

!include "MUI2.nsh"
!include "FileFunc.nsh"

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\${EXE}"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APP_NAME}"

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

Function .onInit
  ; a running copy would keep its files locked: ask it to quit first
  nsExec::Exec 'taskkill /IM "${EXE}"'
  Pop $0
FunctionEnd

Section "${APP_NAME}" SecApp
  SectionIn RO
  SetOutPath "$INSTDIR"
  ; a reinstall or an upgrade replaces the whole bundle: no stale Qt plugin survives
  RMDir /r "$INSTDIR\_internal"
  File /r "${DIST}\kgmon\*.*"
  WriteUninstaller "$INSTDIR\uninstall.exe"
  CreateShortcut "$SMPROGRAMS\${APP_NAME}.lnk" "$INSTDIR\${EXE}" "" "$INSTDIR\${EXE}" 0
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${APP_NAME}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${EXE},0"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  IntFmt $0 "0x%08X" $0
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "EstimatedSize" "$0"
SectionEnd

Section /o "Desktop shortcut" SecDesktop
  CreateShortcut "$DESKTOP\${APP_NAME}.lnk" "$INSTDIR\${EXE}" "" "$INSTDIR\${EXE}" 0
SectionEnd

Section /o "Start at login" SecLogin
  WriteRegStr HKCU "${RUN_KEY}" "${APP_NAME}" '"$INSTDIR\${EXE}" --hidden'
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecApp} "The app, and its Start menu entry."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecDesktop} "A shortcut on the desktop."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecLogin} "Start ${APP_NAME} in the tray when you log in (the app's Settings can change this later)."
!insertmacro MUI_FUNCTION_DESCRIPTION_END

Section "Uninstall"
  nsExec::Exec 'taskkill /IM "${EXE}"'
  Pop $0
  Sleep 500
  Delete "$SMPROGRAMS\${APP_NAME}.lnk"
  Delete "$DESKTOP\${APP_NAME}.lnk"
  DeleteRegValue HKCU "${RUN_KEY}" "${APP_NAME}"
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\kgmon.exe"
  Delete "$INSTDIR\kgmon-cli.exe"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
SectionEnd
