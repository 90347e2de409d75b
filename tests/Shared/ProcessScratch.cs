using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;

namespace Llama.Compiled.Tests;

/// <summary>
/// Temporary folders owned by one test process, named <c>&lt;prefix&gt;&lt;process id&gt;</c>: deleted when the process
/// exits, and — since a test host that <c>dotnet test</c> stops does not always run its exit handlers — any such folder
/// of a process that is no longer running is deleted when the next test process claims its own.
/// </summary>
internal static class ProcessScratch
{
    /// <summary>
    /// The folder <paramref name="parent"/>/<paramref name="prefix"/><c>&lt;this process's id&gt;</c> (not created here),
    /// deleted at exit; the folders of finished processes beside it are deleted now.
    /// </summary>
    public static string Claim(string parent, string prefix)
    {
        DeleteLeftovers(parent, prefix);
        string folder = Path.Combine(parent, prefix + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        AppDomain.CurrentDomain.ProcessExit += (_, _) => TryDelete(folder);
        return folder;
    }

    private static void DeleteLeftovers(string parent, string prefix)
    {
        if (!Directory.Exists(parent))
            return;
        foreach (string folder in Directory.EnumerateDirectories(parent, prefix + "*"))
        {
            if (int.TryParse(Path.GetFileName(folder).AsSpan(prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out int owner) && !IsRunning(owner))
                TryDelete(folder);
        }
    }

    private static bool IsRunning(int processId)
    {
        try
        {
            using Process process = Process.GetProcessById(processId);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false; // no such process
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static void TryDelete(string folder)
    {
        try
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Still mapped by a model that was not disposed (Windows), or another process's: left to the next sweep.
        }
    }
}
