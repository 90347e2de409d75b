using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Text;
using System.Threading;
using Llama.Compiled.Generator.Model;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Text;

namespace Llama.Compiled.Generator;

/// <summary>
/// The pipeline only: [LlamaModel] classes and the JSON AdditionalFiles, combined, parsed into a
/// <see cref="ModelSpec"/>, planned into a <see cref="ForwardPlan"/>, emitted. Every value that
/// flows between steps is equatable, so an edit that changes neither the class nor its config
/// reuses the cached output.
/// </summary>
[Generator(LanguageNames.CSharp)]
public sealed class LlamaModelGenerator : IIncrementalGenerator
{
    private const string AttributeName = "Llama.Compiled.LlamaModelAttribute";

    /// <summary>Step names, for incrementality tests.</summary>
    internal static class Steps
    {
        public const string Targets = nameof(Targets);
        public const string ConfigFiles = nameof(ConfigFiles);
        public const string Plans = nameof(Plans);
    }

    /// <inheritdoc/>
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        IncrementalValuesProvider<ModelTarget> targets = context.SyntaxProvider
            .ForAttributeWithMetadataName(
                AttributeName,
                static (node, _) => node is ClassDeclarationSyntax,
                static (ctx, ct) => TargetParser.Parse(ctx, ct))
            .WithTrackingName(Steps.Targets);

        IncrementalValueProvider<EquatableArray<ConfigFile>> configFiles = context.AdditionalTextsProvider
            .Where(static text => text.Path.EndsWith(".json", System.StringComparison.OrdinalIgnoreCase))
            .Select(static (text, ct) => new ConfigFile(NormalizePath(text.Path), text.GetText(ct)?.ToString() ?? ""))
            .Collect()
            .Select(static (files, _) => EquatableArray.From(files))
            .WithTrackingName(Steps.ConfigFiles);

        IncrementalValuesProvider<PlanResult> plans = targets
            .Combine(configFiles)
            .Select(static (pair, _) => Compile(pair.Left, pair.Right))
            .WithTrackingName(Steps.Plans);

        context.RegisterSourceOutput(plans, static (spc, result) =>
        {
            foreach (DiagnosticInfo diagnostic in result.Diagnostics)
                spc.ReportDiagnostic(diagnostic.ToDiagnostic());
            if (result.Plan is { } plan)
            {
                spc.AddSource(plan.Target.HintName + ".g.cs", SourceText.From(Emitter.EmitModel(plan), Encoding.UTF8));
                spc.AddSource(plan.Target.HintName + ".Kernels.g.cs", SourceText.From(Emitter.EmitKernels(plan), Encoding.UTF8));
            }
        });
    }

    /// <summary>Finds the target's config, parses and plans it; any problem becomes a diagnostic.</summary>
    private static PlanResult Compile(ModelTarget target, EquatableArray<ConfigFile> configFiles)
    {
        var diagnostics = new List<DiagnosticInfo>(target.Diagnostics);
        if (diagnostics.Count > 0)
            return new PlanResult(null, EquatableArray.From(diagnostics));

        ConfigFile? config = ConfigLocator.Find(target, configFiles, diagnostics);
        if (config is null)
            return new PlanResult(null, EquatableArray.From(diagnostics));

        ModelSpec? spec = ConfigParser.Parse(config, target.MaxContext, target.MaxContextLocation, diagnostics);
        ForwardPlan? plan = spec is null ? null : ForwardPlanner.Plan(target, target.ConfigPath, spec);
        return new PlanResult(plan, EquatableArray.From(diagnostics));
    }

    internal static string NormalizePath(string path) => path.Replace('\\', '/');

    /// <summary>The outcome for one [LlamaModel] class: a plan to emit, or diagnostics, or both empty.</summary>
    internal sealed record PlanResult(ForwardPlan? Plan, EquatableArray<DiagnosticInfo> Diagnostics);
}
