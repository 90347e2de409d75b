using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading.Tasks;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Generator.Tests;

/// <summary>
/// Property test: the generator never throws. Every hostile config becomes LLC diagnostics (never an
/// AD0001/CS8785 generator failure), and a config that produces no diagnostic compiles.
/// </summary>
public sealed class NeverThrowsTests(ITestOutputHelper output)
{
    private const string ConfigPath = "/project/models/config.json";
    private const int Iterations = 1500;
    private const int Seed = 20_260_311;

    /// <summary>Compile the output of every Nth clean run (compiling is ~100x slower than generating).</summary>
    private const int CompileEvery = 10;

    [Fact]
    public void HostileConfigsBecomeDiagnosticsNeverExceptions()
    {
        string[] seeds = Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "Configs"), "*.json")
            .Order(StringComparer.Ordinal).Select(File.ReadAllText)
            .Append(GeneratorHarness.Stories260KConfig())
            .Append(ConfigBuilder.Tiny().ToString())
            .ToArray();
        var fuzzer = new ConfigFuzzer(Seed, seeds);

        // One compilation and one driver for every case: replacing the AdditionalText re-runs only the config steps.
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(GeneratorHarness.ModelSource("\"models/config.json\", MaxContext = 0"));
        AdditionalText current = new InMemoryAdditionalText(ConfigPath, seeds[0]);
        GeneratorDriver driver = GeneratorHarness.CreateDriver([current]);

        var failures = new List<string>();
        int clean = 0, compiled = 0, withDiagnostics = 0;
        var ids = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var timer = Stopwatch.StartNew();
        for (int i = 0; i < Iterations && failures.Count < 10; i++)
        {
            string text = fuzzer.Next();
            string kind = fuzzer.LastKind;
            AdditionalText next = new InMemoryAdditionalText(ConfigPath, text);
            driver = driver.ReplaceAdditionalText(current, next);
            current = next;
            driver = driver.RunGeneratorsAndUpdateCompilation(compilation, out Compilation outputCompilation, out ImmutableArray<Diagnostic> diagnostics);
            GeneratorRunResult result = driver.GetRunResult().Results.Single();

            string Case() => $"case {i} ({kind}): {Excerpt(text)}";
            if (result.Exception is not null)
            {
                failures.Add($"{Case()}{Environment.NewLine}  the generator threw {result.Exception.GetType().Name}: {result.Exception.Message}{Environment.NewLine}{result.Exception.StackTrace}");
                continue;
            }
            foreach (Diagnostic d in diagnostics)
            {
                ids[d.Id] = ids.GetValueOrDefault(d.Id) + 1;
                if (!d.Id.StartsWith("LLC", StringComparison.Ordinal))
                    failures.Add($"{Case()}{Environment.NewLine}  non-LLC diagnostic {d}");
                else if (d.Severity != DiagnosticSeverity.Error)
                    failures.Add($"{Case()}{Environment.NewLine}  {d.Id} is not an error");
            }
            if (!diagnostics.IsEmpty)
            {
                withDiagnostics++;
                if (!result.GeneratedSources.IsEmpty)
                    failures.Add($"{Case()}{Environment.NewLine}  diagnostics and generated sources at once");
                continue;
            }

            clean++;
            if (result.GeneratedSources.Length != 2)
                failures.Add($"{Case()}{Environment.NewLine}  no diagnostic but {result.GeneratedSources.Length} sources");
            if (clean % CompileEvery == 1)
            {
                compiled++;
                Diagnostic[] errors = outputCompilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).Take(5).ToArray();
                if (errors.Length > 0)
                    failures.Add($"{Case()}{Environment.NewLine}  generated code does not compile:{Environment.NewLine}    {string.Join(Environment.NewLine + "    ", errors.Select(e => e.ToString()))}");
            }
        }

        output.WriteLine($"{Iterations} configs in {timer.Elapsed.TotalSeconds:F1} s: {clean} clean ({compiled} compiled), {withDiagnostics} with diagnostics");
        output.WriteLine("diagnostics seen: " + string.Join(", ", ids.Select(p => $"{p.Key} x{p.Value}")));
        Assert.True(failures.Count == 0, string.Join(Environment.NewLine + Environment.NewLine, failures));
        // The fuzzer must reach both outcomes, or it tests nothing.
        Assert.True(clean >= 50, $"only {clean} clean configs");
        Assert.True(withDiagnostics >= 500, $"only {withDiagnostics} configs with diagnostics");
        Assert.True(ids.Count >= 5, "too few distinct diagnostics: " + string.Join(", ", ids.Keys));
    }

    [Fact]
    public async Task AbsurdLayerCountIsADiagnosticNotMegabytesOfCode()
    {
        // The forward pass calls each layer on its own line, so the layer count must be bounded before
        // emitting: 100,000 layers (no real model has 200) is megabytes of source, int.MaxValue exhausts
        // memory. The int.MaxValue case runs only once the smaller one is rejected.
        foreach (int layers in new[] { 100_000, int.MaxValue })
        {
            ConfigBuilder config = ConfigBuilder.Tiny().With("num_hidden_layers", layers.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Task<GeneratorRun> run = Task.Run(() => GeneratorHarness.Run(GeneratorHarness.ModelSource(), (ConfigPath, config.ToString())));
            Task finished = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(60)));
            Assert.True(finished == run, $"the generator ran for over a minute on num_hidden_layers = {layers}");
            GeneratorRun result = await run;
            Assert.True(result.GeneratorDiagnostics.Length == 1,
                $"num_hidden_layers = {layers}: expected one LLC diagnostic at num_hidden_layers, got {result.GeneratorDiagnostics.Length} "
                + $"diagnostic(s) and {result.Sources.Length} generated source(s) of {result.Sources.Sum(s => s.SourceText.Length)} characters");
            Diagnostic d = result.GeneratorDiagnostics[0];
            Assert.StartsWith("LLC", d.Id);
            Assert.Contains("num_hidden_layers", d.GetMessage());
            Assert.Empty(result.Sources);
        }
    }

    /// <summary>An AdditionalFiles item whose text cannot be read (GetText returns null, as for an unreadable file).</summary>
    private sealed class UnreadableText(string path) : AdditionalText
    {
        public override string Path { get; } = path;

        public override Microsoft.CodeAnalysis.Text.SourceText? GetText(System.Threading.CancellationToken cancellationToken = default) => null;
    }

    [Fact]
    public void UnreadableConfigIsADiagnostic()
    {
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(GeneratorHarness.ModelSource());
        GeneratorDriver driver = GeneratorHarness.CreateDriver([new UnreadableText(ConfigPath)]).RunGenerators(compilation);
        GeneratorRunResult result = driver.GetRunResult().Results.Single();
        Assert.Null(result.Exception);
        Diagnostic d = Assert.Single(result.Diagnostics);
        Assert.StartsWith("LLC", d.Id);
        Assert.Empty(result.GeneratedSources);
    }

    private static string Excerpt(string text)
    {
        string oneLine = text.Replace("\r", "\\r").Replace("\n", "\\n");
        return oneLine.Length <= 300 ? oneLine : oneLine.Substring(0, 300) + $"... ({text.Length} chars)";
    }
}
