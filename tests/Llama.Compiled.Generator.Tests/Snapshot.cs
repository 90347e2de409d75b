using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.CodeAnalysis;
using Xunit;

namespace Llama.Compiled.Generator.Tests;

/// <summary>
/// Golden files for generated code, kept by hand in Verify's convention (Verify.SourceGenerators is not
/// available here): <c>Snapshots/&lt;TestName&gt;.&lt;HintName&gt;.verified.cs</c>, with the hint name's
/// <c>.cs</c> dropped. On a mismatch the generated text is written beside it as <c>.received.cs</c>
/// and the test fails naming both files and the first differing line; a missing <c>.verified.cs</c>
/// fails too. <c>UPDATE_SNAPSHOTS=1</c> writes (or overwrites) the verified files instead, on a developer's
/// machine only: under <c>CI=true</c> it fails every snapshot test and writes nothing, since accepting whatever
/// the build generated would make the comparison pass by construction.
/// </summary>
internal static class Snapshot
{
    public const string UpdateVariable = "UPDATE_SNAPSHOTS";

    private static readonly Lazy<string> s_folder = new(FindFolder);

    /// <summary>The Snapshots folder in the source tree (not the bin folder).</summary>
    public static string Folder => s_folder.Value;

    public enum Mode { Compare, Update, RefuseUpdateInCi }

    /// <summary>What <see cref="Verify"/> does, given the values of UPDATE_SNAPSHOTS and CI.</summary>
    public static Mode ModeFor(string? update, string? ci) =>
        update != "1" ? Mode.Compare
        : IsCi(ci) ? Mode.RefuseUpdateInCi
        : Mode.Update;

    /// <summary>CI=true (GitHub Actions, GitLab, Azure Pipelines' convention; any case) or CI=1.</summary>
    private static bool IsCi(string? ci) => string.Equals(ci, "true", StringComparison.OrdinalIgnoreCase) || ci == "1";

    public static Mode Current => ModeFor(Environment.GetEnvironmentVariable(UpdateVariable), Environment.GetEnvironmentVariable("CI"));

    /// <summary>Compares every generated source of <paramref name="run"/> with its verified file.</summary>
    public static void Verify(string testName, GeneratorRun run)
    {
        Mode mode = Current;
        if (mode == Mode.RefuseUpdateInCi)
            Assert.Fail($"{UpdateVariable}=1 with CI=true: a CI run compares snapshots and never accepts them. Unset {UpdateVariable}, or update on a developer machine and commit the .verified.cs files.");
        bool updating = mode == Mode.Update;
        if (run.Sources.IsEmpty)
        {
            Assert.Fail($"The generator produced no sources for {testName}; diagnostics:{Environment.NewLine}"
                + string.Join(Environment.NewLine, run.GeneratorDiagnostics.Select(d => "  " + d)));
        }

        var failures = new List<string>();
        var expectedFiles = new HashSet<string>(StringComparer.Ordinal);
        foreach (GeneratedSourceResult source in run.Sources)
        {
            string baseName = testName + "." + StripCs(source.HintName);
            string verified = Path.Combine(Folder, baseName + ".verified.cs");
            string received = Path.Combine(Folder, baseName + ".received.cs");
            expectedFiles.Add(Path.GetFileName(verified));
            string actual = Normalize(source.SourceText.ToString());

            if (updating)
            {
                File.WriteAllText(verified, actual, new UTF8Encoding(false));
                if (File.Exists(received))
                    File.Delete(received);
                continue;
            }

            if (!File.Exists(verified))
            {
                File.WriteAllText(received, actual, new UTF8Encoding(false));
                failures.Add($"{verified} does not exist; the generated text is in {received}. "
                    + $"Review it, then rename it to .verified.cs or run the tests with {UpdateVariable}=1.");
                continue;
            }

            string expected = Normalize(File.ReadAllText(verified));
            if (expected == actual)
            {
                if (File.Exists(received))
                    File.Delete(received);
                continue;
            }

            File.WriteAllText(received, actual, new UTF8Encoding(false));
            failures.Add($"{received} differs from {verified}: {FirstDifference(expected, actual)}. "
                + $"If the change is intended, run the tests with {UpdateVariable}=1 (or copy the received file over the verified one).");
        }

        // A verified file that no generated source matches any more is stale: the output was renamed or dropped.
        foreach (string stale in Directory.EnumerateFiles(Folder, testName + ".*.verified.cs").Select(Path.GetFileName).OfType<string>())
        {
            if (expectedFiles.Contains(stale))
                continue;
            if (updating)
                File.Delete(Path.Combine(Folder, stale));
            else
                failures.Add($"{Path.Combine(Folder, stale)} has no generated source any more (generated: {string.Join(", ", run.Sources.Select(s => s.HintName))}).");
        }

        if (failures.Count > 0)
            Assert.Fail(string.Join(Environment.NewLine, failures));
    }

    /// <summary>Line endings as \n, so snapshots compare equal on every OS and git setting.</summary>
    public static string Normalize(string text) => text.Replace("\r\n", "\n").Replace('\r', '\n');

    internal static string FirstDifference(string expected, string actual)
    {
        string[] a = expected.Split('\n');
        string[] b = actual.Split('\n');
        for (int i = 0; i < Math.Max(a.Length, b.Length); i++)
        {
            string? left = i < a.Length ? a[i] : null;
            string? right = i < b.Length ? b[i] : null;
            if (left != right)
                return $"first difference at line {i + 1}: expected {Show(left)}, received {Show(right)}";
        }
        return "the texts differ";
    }

    private static string Show(string? line) => line is null ? "<end of file>" : "\"" + line.Trim() + "\"";

    private static string StripCs(string hintName) =>
        hintName.EndsWith(".cs", StringComparison.OrdinalIgnoreCase) ? hintName.Substring(0, hintName.Length - 3) : hintName;

    private static string FindFolder()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Llama.Compiled.sln")))
            {
                string folder = Path.Combine(dir, "tests", "Llama.Compiled.Generator.Tests", "Snapshots");
                Directory.CreateDirectory(folder);
                return folder;
            }
        }
        throw new InvalidOperationException("Llama.Compiled.sln not found above " + AppContext.BaseDirectory);
    }
}
