using System;
using System.Collections;
using System.Diagnostics;
using System.IO;
using System.Text;
using System.Threading.Tasks;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Package.Tests;

/// <summary>Where things are: the repository, the shared models, a temp folder per test.</summary>
internal static class Paths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Stories260KHf => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "models", "stories260K", "hf"));

#if DEBUG
    public const string Configuration = "Debug";
#else
    public const string Configuration = "Release";
#endif

    /// <summary>A new empty folder under the system's temp folder (outside the repository, so none of its build files apply).</summary>
    public static string NewTempFolder(string name)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"llama-compiled-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        return folder;
    }

    public static void DeleteQuietly(string folder)
    {
        try
        {
            if (Directory.Exists(folder))
                Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static string FindRepoRoot()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Llama.Compiled.sln")))
                return dir;
        }
        throw new InvalidOperationException("Llama.Compiled.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>Runs a command line tool with a time limit and captures what it prints.</summary>
internal static class Tool
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr, TimeSpan Elapsed);

    /// <summary>Runs <paramref name="fileName"/>; fails the test (with its output) on a non-zero exit or a timeout.</summary>
    public static Result Run(ITestOutputHelper log, string fileName, string arguments, string workingDirectory, TimeSpan timeout, string? stdin = null)
    {
        Result result = RunUnchecked(log, fileName, arguments, workingDirectory, timeout, stdin);
        if (result.ExitCode != 0)
            Assert.Fail($"{fileName} {arguments} exited with {result.ExitCode}:\n{Tail(result.StdOut)}\n{Tail(result.StdErr)}");
        return result;
    }

    public static Result RunUnchecked(ITestOutputHelper log, string fileName, string arguments, string workingDirectory, TimeSpan timeout, string? stdin = null)
    {
        using Process process = Start(fileName, arguments, workingDirectory, redirectInput: true);
        var stopwatch = Stopwatch.StartNew();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
            process.StandardInput.Write(stdin);
        process.StandardInput.Close();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            Assert.Fail($"{fileName} {arguments} did not finish in {timeout.TotalSeconds:0} s:\n{Tail(stdout.Result)}\n{Tail(stderr.Result)}");
        }
        process.WaitForExit();
        var result = new Result(process.ExitCode, stdout.Result, stderr.Result, stopwatch.Elapsed);
        log.WriteLine($"$ {fileName} {arguments}  ({result.Elapsed.TotalSeconds:0.0} s, exit {result.ExitCode})");
        return result;
    }

    /// <summary>
    /// Starts a process with a clean environment for the dotnet CLI: no MSBuild variables inherited from
    /// the test run's own build, no first-run banner or telemetry.
    /// </summary>
    public static Process Start(string fileName, string arguments, string workingDirectory, bool redirectInput)
    {
        var info = new ProcessStartInfo(fileName, arguments)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardInput = redirectInput,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (DictionaryEntry variable in Environment.GetEnvironmentVariables())
        {
            string name = (string)variable.Key;
            if (name.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || name.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)
                || name is "DOTNET_HOST_PATH" or "DOTNET_CLI_UI_LANGUAGE")
            {
                info.Environment.Remove(name);
            }
        }
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        info.Environment["DOTNET_CLI_UI_LANGUAGE"] = "en";
        return Process.Start(info) ?? throw new InvalidOperationException("Could not start " + fileName);
    }

    /// <summary>Fails when MSBuild printed a warning (<c>file(line,col): warning CODE: …</c>).</summary>
    public static void AssertNoWarnings(Result result)
    {
        foreach (string line in result.StdOut.Split('\n'))
            Assert.DoesNotMatch(@"\bwarning [A-Z]+[0-9]+\b", line);
    }

    private static string Tail(string text) => text.Length > 6000 ? "…" + text[^6000..] : text;
}
