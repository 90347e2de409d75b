using System;
using System.Collections;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Xunit;

namespace Llama.Compiled.Generator.Tests;

/// <summary>
/// The pipeline is incremental: an edit that touches neither the model class nor a .json AdditionalFile
/// reuses every step of the source side (Targets, ConfigFiles, Plans, Emitted), moving the class within its file
/// re-runs only the diagnostics side (TargetResults), a config edit re-plans, and no step output holds
/// a symbol, syntax, compilation or location (which would defeat caching and keep compilations alive).
/// </summary>
public sealed class IncrementalityTests
{
    private const string ConfigPath = "/project/models/config.json";
    private static readonly string[] s_steps = ["Targets", "ConfigFiles", "Plans", "Emitted"];

    private static readonly CSharpParseOptions s_parseOptions = new(LanguageVersion.Latest);

    private sealed class Fixture
    {
        public CSharpCompilation Compilation = GeneratorHarness.CreateCompilation(GeneratorHarness.ModelSource());
        public AdditionalText Config = new InMemoryAdditionalText(ConfigPath, ConfigBuilder.Tiny().ToString());
        public AdditionalText Readme = new InMemoryAdditionalText("/project/README.md", "# a project");
        public AdditionalText Settings = new InMemoryAdditionalText("/project/appsettings.txt", "x = 1");
        public GeneratorDriver Driver;

        public Fixture() => Driver = GeneratorHarness.CreateDriver([Config, Readme, Settings], trackSteps: true);

        public GeneratorRunResult Run(Compilation? compilation = null)
        {
            Driver = Driver.RunGenerators(compilation ?? Compilation);
            GeneratorRunResult result = Driver.GetRunResult().Results.Single();
            Assert.Null(result.Exception);
            return result;
        }
    }

    private static SyntaxTree Tree(string text, string path) => CSharpSyntaxTree.ParseText(text, s_parseOptions, path);

    private static IEnumerable<(string Step, IncrementalStepRunReason Reason)> Outputs(GeneratorRunResult result) =>
        s_steps.SelectMany(step => result.TrackedSteps[step].SelectMany(run => run.Outputs.Select(o => (step, o.Reason))));

    private static void AssertReused(GeneratorRunResult result, string edit)
    {
        foreach (string step in s_steps)
            Assert.True(result.TrackedSteps.ContainsKey(step), $"step {step} was not tracked after {edit}");
        foreach ((string step, IncrementalStepRunReason reason) in Outputs(result))
        {
            Assert.True(reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged,
                $"after {edit}, an output of {step} is {reason}");
        }
    }

    private static void AssertSameSources(GeneratorRunResult expected, GeneratorRunResult actual)
    {
        Assert.Equal(expected.GeneratedSources.Select(s => s.HintName), actual.GeneratedSources.Select(s => s.HintName));
        for (int i = 0; i < expected.GeneratedSources.Length; i++)
            Assert.Equal(expected.GeneratedSources[i].SourceText.ToString(), actual.GeneratedSources[i].SourceText.ToString());
    }

    [Fact]
    public void FirstRunTracksEveryStep()
    {
        var fixture = new Fixture();
        GeneratorRunResult result = fixture.Run();
        Assert.Equal(2, result.GeneratedSources.Length);
        foreach (string step in s_steps)
        {
            Assert.True(result.TrackedSteps.ContainsKey(step), $"no tracked step {step}; tracked: {string.Join(", ", result.TrackedSteps.Keys)}");
            Assert.All(result.TrackedSteps[step].SelectMany(r => r.Outputs), o => Assert.Equal(IncrementalStepRunReason.New, o.Reason));
        }
    }

    [Fact]
    public void AddingAnUnrelatedSourceReusesEveryStep()
    {
        var fixture = new Fixture();
        GeneratorRunResult first = fixture.Run();
        CSharpCompilation edited = fixture.Compilation.AddSyntaxTrees(Tree("namespace UserApp; public class Other { public int X; }", "/project/Other.cs"));
        GeneratorRunResult second = fixture.Run(edited);
        AssertReused(second, "adding a syntax tree");
        AssertSameSources(first, second);
    }

    [Fact]
    public void EditingAnotherClassReusesEveryStep()
    {
        var fixture = new Fixture();
        SyntaxTree other = Tree("namespace UserApp; public class Other { public int X; }", "/project/Other.cs");
        CSharpCompilation withOther = fixture.Compilation.AddSyntaxTrees(other);
        GeneratorRunResult first = fixture.Run(withOther);

        CSharpCompilation edited = withOther.ReplaceSyntaxTree(other,
            Tree("namespace UserApp; public class Other { public int X; public string Y => \"changed\"; }", "/project/Other.cs"));
        GeneratorRunResult second = fixture.Run(edited);
        AssertReused(second, "editing another class");
        AssertSameSources(first, second);

        // And again with no change at all.
        GeneratorRunResult third = fixture.Run(edited);
        AssertReused(third, "a run with no edit");
        AssertSameSources(first, third);
    }

    [Fact]
    public void ABlankLineAboveTheClassReplansAndReEmitsNothing()
    {
        var fixture = new Fixture();
        GeneratorRunResult first = fixture.Run();
        SyntaxTree model = fixture.Compilation.SyntaxTrees.Single();
        CSharpCompilation edited = fixture.Compilation.ReplaceSyntaxTree(model, Tree("\n" + model.GetText(), model.FilePath));
        GeneratorRunResult second = fixture.Run(edited);

        // The parser ran again (the class moved), its location-free target did not change, so nothing after it ran.
        Assert.Contains(second.TrackedSteps["TargetResults"].SelectMany(r => r.Outputs), o => o.Reason == IncrementalStepRunReason.Modified);
        AssertReused(second, "a blank line above the class");
        AssertSameSources(first, second);
    }

    [Fact]
    public void ADiagnosticOfAPlanFollowsTheClassWhenItMoves()
    {
        // The plan's diagnostic (no config at that path) is anchored to the attribute's argument, which the
        // diagnostics side places with the class's current locations although the plan itself is reused.
        var fixture = new Fixture();
        string source = GeneratorHarness.ModelSource(attributeArguments: "\"nowhere/config.json\"");
        CSharpCompilation broken = fixture.Compilation.ReplaceSyntaxTree(fixture.Compilation.SyntaxTrees.Single(), Tree(source, "/project/Model.cs"));
        GeneratorRunResult first = fixture.Run(broken);
        Diagnostic before = Assert.Single(first.Diagnostics, d => d.Id == "LLC0001");

        CSharpCompilation moved = broken.ReplaceSyntaxTree(broken.SyntaxTrees.Single(), Tree("\n\n" + source, "/project/Model.cs"));
        GeneratorRunResult second = fixture.Run(moved);
        Diagnostic after = Assert.Single(second.Diagnostics, d => d.Id == "LLC0001");
        Assert.Equal(before.Location.GetLineSpan().StartLinePosition.Line + 2, after.Location.GetLineSpan().StartLinePosition.Line);
        Assert.All(second.TrackedSteps["Plans"].SelectMany(r => r.Outputs),
            o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"Plans is {o.Reason}"));
    }

    [Fact]
    public void EditingANonJsonAdditionalFileReRunsNothing()
    {
        var fixture = new Fixture();
        GeneratorRunResult first = fixture.Run();
        fixture.Driver = fixture.Driver.ReplaceAdditionalText(fixture.Readme, new InMemoryAdditionalText("/project/README.md", "# edited"));
        GeneratorRunResult second = fixture.Run();
        AssertReused(second, "editing README.md");
        AssertSameSources(first, second);

        fixture.Driver = fixture.Driver.AddAdditionalTexts([new InMemoryAdditionalText("/project/notes.txt", "new file")]);
        GeneratorRunResult third = fixture.Run();
        AssertReused(third, "adding notes.txt");
        AssertSameSources(first, third);
    }

    [Fact]
    public void EditingTheConfigReplansAndChangesTheOutput()
    {
        var fixture = new Fixture();
        GeneratorRunResult first = fixture.Run();
        var edited = new InMemoryAdditionalText(ConfigPath, ConfigBuilder.Tiny().With("vocab_size", "256").ToString());
        fixture.Driver = fixture.Driver.ReplaceAdditionalText(fixture.Config, edited);
        GeneratorRunResult second = fixture.Run();

        Assert.Contains(second.TrackedSteps["Plans"].SelectMany(r => r.Outputs), o => o.Reason == IncrementalStepRunReason.Modified);
        Assert.Contains(second.TrackedSteps["ConfigFiles"].SelectMany(r => r.Outputs), o => o.Reason == IncrementalStepRunReason.Modified);
        Assert.All(second.TrackedSteps["Targets"].SelectMany(r => r.Outputs),
            o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"Targets is {o.Reason}"));
        string before = first.GeneratedSources.Single(s => s.HintName.EndsWith("TestModel.g.cs", StringComparison.Ordinal)).SourceText.ToString();
        string after = second.GeneratedSources.Single(s => s.HintName.EndsWith("TestModel.g.cs", StringComparison.Ordinal)).SourceText.ToString();
        Assert.Contains("VocabSize = 512;", before);
        Assert.Contains("VocabSize = 256;", after);

        // Editing it back to the same text as before is a change of the text, but the plan equals the first one.
        fixture.Driver = fixture.Driver.ReplaceAdditionalText(edited, new InMemoryAdditionalText(ConfigPath, ConfigBuilder.Tiny().ToString()));
        GeneratorRunResult third = fixture.Run();
        AssertSameSources(first, third);
    }

    [Fact]
    public void EditingAConfigThatNoModelUsesDoesNotChangeThePlan()
    {
        var fixture = new Fixture();
        var other = new InMemoryAdditionalText("/project/other/tokenizer_config.json", "{\"a\": 1}");
        fixture.Driver = fixture.Driver.AddAdditionalTexts([other]);
        GeneratorRunResult first = fixture.Run();
        fixture.Driver = fixture.Driver.ReplaceAdditionalText(other, new InMemoryAdditionalText("/project/other/tokenizer_config.json", "{\"a\": 2}"));
        GeneratorRunResult second = fixture.Run();
        Assert.All(second.TrackedSteps["Plans"].SelectMany(r => r.Outputs),
            o => Assert.True(o.Reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged, $"Plans is {o.Reason}"));
        AssertSameSources(first, second);
    }

    [Fact]
    public void AGgufCompiledModelIsReusedAfterAnUnrelatedEdit()
    {
        // The header file the targets write for model.gguf, and a class that names the GGUF.
        CSharpCompilation compilation = GeneratorHarness.CreateCompilation(GeneratorHarness.ModelSource("\"models/model.gguf\""));
        (string path, string text) = GgufHeaderBuilder.Stories260K().Item();
        var header = new InMemoryAdditionalText(path, text);
        var readme = new InMemoryAdditionalText("/project/README.md", "# a project");
        GeneratorDriver driver = GeneratorHarness.CreateDriver([header, readme], trackSteps: true);
        driver = driver.RunGenerators(compilation);
        GeneratorRunResult first = driver.GetRunResult().Results.Single();
        Assert.Empty(first.Diagnostics);
        Assert.Equal(2, first.GeneratedSources.Length);

        CSharpCompilation edited = compilation.AddSyntaxTrees(Tree("namespace UserApp; public class Other { public int X; }", "/project/Other.cs"));
        driver = driver.ReplaceAdditionalText(readme, new InMemoryAdditionalText("/project/README.md", "# edited"));
        driver = driver.RunGenerators(edited);
        GeneratorRunResult second = driver.GetRunResult().Results.Single();
        AssertReused(second, "an unrelated edit next to a GGUF-compiled model");
        AssertSameSources(first, second);

        // A new header (the GGUF changed) re-plans.
        driver = driver.ReplaceAdditionalText(header, new InMemoryAdditionalText(path, GgufHeaderBuilder.Stories260K(layers: 4).ToString()));
        driver = driver.RunGenerators(edited);
        GeneratorRunResult third = driver.GetRunResult().Results.Single();
        Assert.Contains(third.TrackedSteps["Plans"].SelectMany(r => r.Outputs), o => o.Reason == IncrementalStepRunReason.Modified);
        Assert.Contains("LayerCount = 4;", third.GeneratedSources.Single(s => s.HintName.EndsWith("TestModel.g.cs", StringComparison.Ordinal)).SourceText.ToString());
    }

    [Fact]
    public void StepOutputsHoldNoCompilationObjects()
    {
        var fixture = new Fixture();
        GeneratorRunResult first = fixture.Run();
        // Also a failing target, so diagnostics (with their locations) flow through the steps.
        CSharpCompilation withBadModel = fixture.Compilation.AddSyntaxTrees(Tree("""
            using Llama.Compiled;
            namespace UserApp;
            [LlamaModel("missing/config.json", MaxContext = 16)]
            public partial class Broken;
            """, "/project/Broken.cs"));
        GeneratorRunResult second = fixture.Run(withBadModel);
        Assert.Contains(second.Diagnostics, d => d.Id == "LLC0001");

        foreach (GeneratorRunResult result in new[] { first, second })
        {
            foreach (string step in s_steps.Append("TargetResults"))
            {
                foreach (IncrementalGeneratorRunStep run in result.TrackedSteps[step])
                {
                    foreach ((object value, IncrementalStepRunReason _) in run.Outputs)
                        AssertNoCompilationObjects(value, step, new HashSet<object>(ReferenceEqualityComparer.Instance), 0);
                }
            }
        }
    }

    [Fact]
    public void TheWalkerFindsALocation()
    {
        var holder = new { Inner = new[] { new { Where = Location.None } } };
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => AssertNoCompilationObjects(holder, "holder", new HashSet<object>(ReferenceEqualityComparer.Instance), 0));
    }

    private static readonly Type[] s_forbidden =
    [
        typeof(ISymbol), typeof(SyntaxNode), typeof(SyntaxTree), typeof(Compilation), typeof(Location), typeof(SemanticModel),
        typeof(AttributeData), typeof(SyntaxReference),
    ];

    private static void AssertNoCompilationObjects(object? value, string path, HashSet<object> seen, int depth)
    {
        if (value is null)
            return;
        Type type = value.GetType();
        foreach (Type forbidden in s_forbidden)
            Assert.False(forbidden.IsInstanceOfType(value), $"{path} is a {type.FullName} ({forbidden.Name})");
        Assert.False(value is SyntaxToken or SyntaxTrivia or TypedConstant, $"{path} is a {type.FullName}");
        if (type.IsPrimitive || type.IsEnum || value is string or decimal || depth > 24)
            return;
        if (!type.IsValueType && !seen.Add(value))
            return;

        if (value is IEnumerable items)
        {
            int index = 0;
            foreach (object? item in items)
            {
                if (index > 10_000)
                    break;
                AssertNoCompilationObjects(item, $"{path}[{index++}]", seen, depth + 1);
            }
        }
        foreach (PropertyInfo property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetIndexParameters().Length > 0 || property.GetMethod is null)
                continue;
            object? child;
            try
            {
                child = property.GetValue(value);
            }
            catch (TargetInvocationException)
            {
                continue; // e.g. the indexer-backed view of an empty array
            }
            AssertNoCompilationObjects(child, path + "." + property.Name, seen, depth + 1);
        }
        foreach (FieldInfo field in type.GetFields(BindingFlags.Public | BindingFlags.Instance))
            AssertNoCompilationObjects(field.GetValue(value), path + "." + field.Name, seen, depth + 1);
    }
}
