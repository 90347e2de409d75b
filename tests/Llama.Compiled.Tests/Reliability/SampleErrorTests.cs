using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Tests;

/// <summary>
/// The samples, run as a user runs them, turn every hostile model path into exactly one
/// <c>error:</c> line on stderr and exit code 2: no stack trace, no crash, no hang.
/// </summary>
[Collection(SerialReliabilityCollection.Name)]
public sealed class SampleErrorTests(ITestOutputHelper output)
{
    private static readonly Lock BuildLock = new();

    public static IEnumerable<object[]> Cases =>
        HostileInputs.Names
            .Where(n => n != "fifo-in-folder") // the same failure as fifo.bin; each hang costs the whole guard time
            .Concat(["zeros.safetensors", "weights-without-tokenizer", "corrupt-tokenizer"])
            .Select(n => new object[] { n });

    [Theory]
    [MemberData(nameof(Cases))]
    public void StoriesPrintsOneErrorLineAndExitsWithTwo(string name) => CheckSample("Stories", name, stdin: null);

    [Theory]
    [MemberData(nameof(Cases))]
    public void ChatPrintsOneErrorLineAndExitsWithTwo(string name) => CheckSample("Chat", name, stdin: "Hello\n/exit\n");

    [Fact]
    public void StoriesStillRunsOnTheRealModel()
    {
        // The control: the same invocation on the real model succeeds.
        (int code, string stdout, string stderr) = Run(SampleDll("Stories"), ["--model", TestPaths.Stories260KHf, "--max-tokens", "20", "--seed", "1", "--prompt", "Once upon a time"], null);
        Assert.True(code == 0, $"exit {code}: {stderr}");
        Assert.StartsWith("Once upon a time", stdout);
    }

    [Fact]
    public void APromptLongerThanTheContextIsOneErrorLine()
    {
        string prompt = string.Join(' ', Enumerable.Repeat("Once upon a time there was a little dog.", 200));
        (int code, _, string stderr) = Run(SampleDll("Stories"), ["--model", TestPaths.Stories260KHf, "--prompt", prompt], null);
        AssertOneErrorLine("long prompt", code, stderr);
    }

    [Theory]
    [InlineData("--max-tokens", "-1")]
    [InlineData("--temperature", "nan")]
    [InlineData("--top-p", "2")]
    [InlineData("--bogus", "1")]
    [InlineData("--model", "")]
    public void BadArgumentsAreOneErrorLine(string option, string value)
    {
        (int code, _, string stderr) = Run(SampleDll("Stories"), [option, value], null);
        AssertOneErrorLine($"{option} {value}", code, stderr);
    }

    private void CheckSample(string sample, string name, string? stdin)
    {
        using var folder = new TempFolder();
        string path = name switch
        {
            "zeros.safetensors" => HostileInputs.SparseZeros(name, folder),
            "weights-without-tokenizer" => WeightsOnly(folder, tokenizer: null),
            "corrupt-tokenizer" => WeightsOnly(folder, tokenizer: new byte[] { 0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 1, 2, 3 }),
            _ => HostileInputs.Create(name, folder),
        };
        (int code, string stdout, string stderr) = Run(SampleDll(sample), ["--model", path, "--max-tokens", "5"], stdin);
        output.WriteLine($"{sample} {name}: exit {code}, stderr: {stderr.TrimEnd()}");
        AssertOneErrorLine(name, code, stderr);
        Assert.Contains(Path.GetFileName(path), stderr);
    }

    private static string WeightsOnly(TempFolder folder, byte[]? tokenizer)
    {
        string path = folder.File("weights-only");
        Directory.CreateDirectory(path);
        File.Copy(Path.Combine(TestPaths.Stories260KHf, "model.safetensors"), Path.Combine(path, "model.safetensors"));
        if (tokenizer is not null)
            File.WriteAllBytes(Path.Combine(path, "tokenizer.model"), tokenizer);
        return path;
    }

    private static void AssertOneErrorLine(string name, int code, string stderr)
    {
        string[] lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(code == 2, $"{name}: exit code {code}, stderr:\n{stderr}");
        Assert.True(lines.Length == 1, $"{name}: {lines.Length} lines on stderr:\n{stderr}");
        Assert.StartsWith("error: ", lines[0]);
        Assert.DoesNotContain("   at ", stderr);
    }

    private static readonly HashSet<string> Checked = [];

    /// <summary>
    /// The sample's Release build output; built (once per run) if it is missing or older than the
    /// sources it is made from, so that the test never judges a stale binary.
    /// </summary>
    private static string SampleDll(string sample)
    {
        string dll = Path.Combine(TestPaths.RepoRoot, "samples", sample, "bin", "Release", "net10.0", sample + ".dll");
        lock (BuildLock)
        {
            if (Checked.Add(sample) && (!File.Exists(dll) || NewestSource(sample) > File.GetLastWriteTimeUtc(dll)))
            {
                (int code, string stdout, string stderr) = Run("build", [Path.Combine(TestPaths.RepoRoot, "samples", sample), "-c", "Release", "-nologo", "-v", "q"], null, dotnetCommand: true, timeout: TimeSpan.FromMinutes(5));
                Assert.True(code == 0 && File.Exists(dll), $"dotnet build samples/{sample} failed ({code}):\n{stdout}\n{stderr}");
            }
        }
        return dll;
    }

    /// <summary>The last write time of the newest source of the sample, the runtime and the generator.</summary>
    private static DateTime NewestSource(string sample)
    {
        DateTime newest = DateTime.MinValue;
        foreach (string folder in new[] { Path.Combine("samples", sample), Path.Combine("src", "Runtime"), Path.Combine("src", "Generator"), Path.Combine("src", "Attributes") })
        {
            string root = Path.Combine(TestPaths.RepoRoot, folder);
            if (!Directory.Exists(root))
                continue;
            foreach (string file in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories))
            {
                string relative = Path.GetRelativePath(root, file);
                if (relative.StartsWith("bin" + Path.DirectorySeparatorChar, StringComparison.Ordinal) || relative.StartsWith("obj" + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                    continue;
                if (file.EndsWith(".cs", StringComparison.Ordinal) || file.EndsWith(".csproj", StringComparison.Ordinal))
                {
                    DateTime time = File.GetLastWriteTimeUtc(file);
                    if (time > newest)
                        newest = time;
                }
            }
        }
        return newest;
    }

    private static (int Code, string Stdout, string Stderr) Run(string dll, string[] args, string? stdin) =>
        Run(dll, args, stdin, dotnetCommand: false, timeout: TimeSpan.FromSeconds(15));

    /// <summary>Runs <c>dotnet dll args</c> (or <c>dotnet verb args</c>); a process still running after <paramref name="timeout"/> is killed and fails the test as a hang.</summary>
    private static (int Code, string Stdout, string Stderr) Run(string dllOrVerb, string[] args, string? stdin, bool dotnetCommand, TimeSpan timeout)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = TestPaths.RepoRoot,
        };
        start.ArgumentList.Add(dllOrVerb);
        foreach (string arg in args)
            start.ArgumentList.Add(arg);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using Process process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
            process.StandardInput.Write(stdin);
        process.StandardInput.Close();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            Assert.Fail($"dotnet {dllOrVerb} {string.Join(' ', args)} hung (killed after {timeout.TotalSeconds} s); stderr so far:\n{stderr.Result}");
        }
        process.WaitForExit();
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
