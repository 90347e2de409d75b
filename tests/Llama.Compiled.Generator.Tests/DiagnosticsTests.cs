using System.Linq;
using Microsoft.CodeAnalysis;
using Xunit;

namespace Llama.Compiled.Generator.Tests;

/// <summary>Every bad input becomes an LLC diagnostic at the attribute or the config line; the generator never throws.</summary>
public sealed class DiagnosticsTests
{
    private static Diagnostic Single(GeneratorRun run, string id)
    {
        Assert.Empty(run.Sources);
        Diagnostic diagnostic = Assert.Single(run.GeneratorDiagnostics);
        Assert.Equal(id, diagnostic.Id);
        Assert.Equal(DiagnosticSeverity.Error, diagnostic.Severity);
        return diagnostic;
    }

    private static GeneratorRun RunWithConfig(string config) =>
        GeneratorHarness.Run(GeneratorHarness.ModelSource(), ("/project/models/config.json", config));

    [Fact]
    public void ConfigNotAmongAdditionalFiles()
    {
        GeneratorRun run = GeneratorHarness.Run(GeneratorHarness.ModelSource());
        Diagnostic d = Single(run, "LLC0001");
        Assert.Contains("<AdditionalFiles Include=\"models/config.json\" />", d.GetMessage());
        Assert.Equal(GeneratorHarness.SourcePath, d.Location.GetLineSpan().Path);
    }

    [Fact]
    public void InvalidJsonPointsAtLineAndColumn()
    {
        Diagnostic d = Single(RunWithConfig("{\n  \"hidden_size\": 64,\n  \"vocab_size\": ]\n}"), "LLC0002");
        FileLinePositionSpan span = d.Location.GetLineSpan();
        Assert.Equal("/project/models/config.json", span.Path);
        Assert.Equal(2, span.StartLinePosition.Line);
        Assert.Equal(16, span.StartLinePosition.Character);
        Assert.Contains("line 3, column 17", d.GetMessage());
    }

    [Fact]
    public void MissingRequiredKey()
    {
        string config = GeneratorHarness.Stories260KConfig().Replace("\"intermediate_size\": 172,", "");
        Diagnostic d = Single(RunWithConfig(config), "LLC0003");
        Assert.Contains("intermediate_size", d.GetMessage());
    }

    [Fact]
    public void WrongTypePointsAtTheValue()
    {
        string config = GeneratorHarness.Stories260KConfig().Replace("\"hidden_size\": 64", "\"hidden_size\": \"64\"");
        Diagnostic d = Single(RunWithConfig(config), "LLC0004");
        Assert.Contains("hidden_size", d.GetMessage());
        Assert.Contains("an integer", d.GetMessage());
        Assert.Equal(5, d.Location.GetLineSpan().StartLinePosition.Line); // line 6 of the file
    }

    [Fact]
    public void NonPartialClass()
    {
        GeneratorRun run = GeneratorHarness.Run(GeneratorHarness.ModelSource(declaration: "public class TestModel { }"),
            ("/project/models/config.json", GeneratorHarness.Stories260KConfig()));
        Assert.Contains("TestModel", Single(run, "LLC0007").GetMessage());
    }
}
