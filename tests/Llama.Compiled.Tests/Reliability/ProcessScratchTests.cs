using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>The test processes' temporary folders do not pile up when a test host is stopped before its exit handlers run.</summary>
public sealed class ProcessScratchTests
{
    [Fact]
    public void AFinishedProcesssFolderIsDeletedAndARunningOnesIsKept()
    {
        string parent = Path.Combine(Path.GetTempPath(), $"process-scratch-test-{Guid.NewGuid():N}");
        try
        {
            using var finished = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
            finished.WaitForExit();
            string left = Directory.CreateDirectory(Path.Combine(parent, "run-" + finished.Id.ToString(CultureInfo.InvariantCulture))).FullName;
            File.WriteAllText(Path.Combine(left, "weights.gguf"), "left behind");
            string running = Directory.CreateDirectory(Path.Combine(parent, "run-1")).FullName; // init: always running
            string other = Directory.CreateDirectory(Path.Combine(parent, "unrelated-" + finished.Id.ToString(CultureInfo.InvariantCulture))).FullName;

            string mine = ProcessScratch.Claim(parent, "run-");

            Assert.Equal(Path.Combine(parent, "run-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture)), mine);
            Assert.False(Directory.Exists(left));
            Assert.True(Directory.Exists(running));
            Assert.True(Directory.Exists(other));
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }
}
