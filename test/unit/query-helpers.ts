import type { SpaceDef } from '../../src/schema/index.js'
import { parseSchemaSpec } from '../../src/schema/index.js'

/** A space with a column of every kind the query layer cares about. */
export const sales: SpaceDef = {
  name: 'sales',
  uid: 'sales-1',
  partitions: 4,
  replicas: 1,
  schema: parseSchemaSpec('region:utf8,country:utf8,amount:float64,qty:int32,big:int64,ts:timestamp,day:date,tags:list<utf8>,embedding:vector<3>,links:list<utf8>,active:bool')
}

export const spaces = (name: string): SpaceDef | undefined => name === 'sales' ? sales : undefined
