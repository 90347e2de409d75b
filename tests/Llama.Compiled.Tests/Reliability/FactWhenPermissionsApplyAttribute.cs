using System;
using System.IO;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// A fact that is reported as skipped, with the reason, where file permissions do not stop this process: as root
/// (or with CAP_DAC_OVERRIDE) every file is readable, and Windows has no Unix file modes. xunit 2.9 has no
/// dynamic skip (Assert.Skip is xunit v3's), but a fact's <see cref="FactAttribute.Skip"/> is read from the
/// attribute instance when tests are discovered, so it can be decided here.
/// </summary>
public sealed class FactWhenPermissionsApplyAttribute : FactAttribute
{
    public FactWhenPermissionsApplyAttribute()
    {
        if (OperatingSystem.IsWindows())
            Skip = "Unix file modes do not apply on Windows";
        else if (CanReadAFileWithModeNone())
            Skip = "this process reads a file with mode 000 (it runs as root or with CAP_DAC_OVERRIDE), so an unreadable file cannot be made; run the tests as another user to cover it";
    }

    /// <summary>Whether a file with no permission bits opens for reading: tried, not guessed from the user name.</summary>
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static bool CanReadAFileWithModeNone()
    {
        string path = Path.Combine(Path.GetTempPath(), "llc-permission-probe-" + Guid.NewGuid().ToString("N"));
        try
        {
            File.WriteAllBytes(path, [1]);
            File.SetUnixFileMode(path, UnixFileMode.None);
            using FileStream stream = File.OpenRead(path);
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
        finally
        {
            File.Delete(path);
        }
    }
}
