using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Package.Tests;

/// <summary>
/// Publishes samples/Chat with NativeAOT and checks that the native binary, fed a scripted
/// conversation with greedy sampling, prints exactly what the JIT build prints.
/// </summary>
[Collection(SlowTests.Name)]
public class NativeChatTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(5);

    private const string Script = "Hello there\nTell me a story about a dog.\n/reset\nWho are you?\n/exit\n";

    [Fact]
    public void TheNativeBinaryChatsLikeTheJitBuild()
    {
        string root = Paths.NewTempFolder("chat-aot");
        try
        {
            // Published with bin/obj of its own, so that nothing in the repository is touched. Trim and
            // AOT warnings are errors in samples/Chat, so a warning fails this publish.
            string publish = Path.Combine(root, "publish");
            Tool.Result published = Tool.Run(log, "dotnet",
                $"publish \"{Path.Combine(Paths.RepoRoot, "samples", "Chat", "Chat.csproj")}\" -c Release -o \"{publish}\" " +
                $"--artifacts-path \"{Path.Combine(root, "artifacts")}\" --disable-build-servers",
                Paths.RepoRoot, Limit);
            Tool.AssertNoWarnings(published);
            string native = Path.Combine(publish, OperatingSystem.IsWindows() ? "Chat.exe" : "Chat");
            Assert.True(File.Exists(native), "no native binary at " + native);
            // The JIT build, built with this test project (a project reference).
            string jit = Path.Combine(Paths.RepoRoot, "samples", "Chat", "bin", Paths.Configuration, "net10.0", "Chat.dll");
            Assert.True(File.Exists(jit), "no JIT build at " + jit);

            string arguments = $"--model \"{Paths.Stories260KHf}\" --temperature 0 --max-tokens 48";
            Tool.Result nativeRun = Tool.Run(log, native, arguments, root, Limit, Script);
            Tool.Result jitRun = Tool.Run(log, "dotnet", $"\"{jit}\" {arguments}", root, Limit, Script);

            log.WriteLine(nativeRun.StdOut);
            Assert.Equal(jitRun.StdOut, nativeRun.StdOut);
            // Three answers (each followed by its speed on stderr), the second one after the first's history.
            Assert.Equal(3, nativeRun.StdErr.Split('\n').Count(line => line.Contains(" tok/s", StringComparison.Ordinal)));
            Assert.Contains("> Who are you?\n", nativeRun.StdOut);
            Assert.Contains("(conversation reset)", nativeRun.StdErr);

            log.WriteLine($"native binary: {new FileInfo(native).Length:N0} bytes");
            log.WriteLine($"start to first token: native {FirstToken(native, arguments, root):0} ms, JIT {FirstToken("dotnet", $"\"{jit}\" {arguments}", root):0} ms");
        }
        finally
        {
            Paths.DeleteQuietly(root);
        }
    }

    /// <summary>Milliseconds from starting the process to the first byte of its first answer.</summary>
    private static double FirstToken(string fileName, string arguments, string workingDirectory)
    {
        var stopwatch = Stopwatch.StartNew();
        using Process process = Tool.Start(fileName, arguments, workingDirectory, redirectInput: true);
        process.StandardInput.Write("Hello there\n");
        process.StandardInput.Close();
        // The first line is the echoed question; the answer's first character follows it.
        Stream stdout = process.StandardOutput.BaseStream;
        bool echoed = false;
        double elapsed = double.NaN;
        int b;
        while ((b = stdout.ReadByte()) >= 0)
        {
            if (echoed)
            {
                elapsed = stopwatch.Elapsed.TotalMilliseconds;
                break;
            }
            echoed = b == '\n';
        }
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return elapsed;
    }
}
